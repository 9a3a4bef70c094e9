package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

func (p *plugin) rotateCommand() *cobra.Command {
	var all, noWait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "rotate (NAME... | --all) [-n NAMESPACE] [--no-wait]",
		Short: "Ask for new credentials now and wait until they are issued",
		Long: "rotate sets the annotation " + rkv1.AnnotationRotate + " on the AssumedRoles to a new value, which makes the operator issue " +
			"new credentials once, at once, even during a failure's backoff. It then waits until each is issued (or fails) and prints the result.",
		RunE: func(cmd *cobra.Command, names []string) error {
			if all == (len(names) > 0) {
				return errors.New("name AssumedRoles or give --all, not both")
			}
			return p.rotate(cmd.Context(), names, all, noWait, timeout)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "Rotate every AssumedRole in the namespace.")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "Return once the rotation is requested.")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "How long to wait for the new credentials.")
	return cmd
}

func (p *plugin) rotate(ctx context.Context, names []string, all, noWait bool, timeout time.Duration) error {
	if all {
		var list rkv1.AssumedRoleList
		if err := p.client.List(ctx, &list, client.InNamespace(p.namespace)); err != nil {
			return err
		}
		for _, ar := range list.Items {
			names = append(names, ar.Name)
		}
		if len(names) == 0 {
			return fmt.Errorf("no AssumedRoles in namespace %s", p.namespace)
		}
		sort.Strings(names)
	}
	value := p.now().UTC().Format(time.RFC3339Nano)
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{rkv1.AnnotationRotate: value}}})
	for _, name := range names {
		ar := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Namespace: p.namespace, Name: name}}
		if err := p.client.Patch(ctx, ar, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return fmt.Errorf("requesting rotation of %s/%s: %w", p.namespace, name, err)
		}
		p.out.printf("rotation requested for %s/%s (%s=%s)\n", p.namespace, name, rkv1.AnnotationRotate, value)
	}
	if noWait {
		return nil
	}
	return p.waitRotated(ctx, names, value, timeout)
}

// waitRotated polls until the operator has answered the rotation request of each AssumedRole
// (status.rotateRequest), with an issuance or a failure.
func (p *plugin) waitRotated(ctx context.Context, names []string, value string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pending := map[string]bool{}
	for _, n := range names {
		pending[n] = true
	}
	waiting := map[string]string{} // the last "still waiting because" note printed per name
	var failed []string
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for len(pending) > 0 {
		for _, name := range sortedKeys(pending) {
			ar := &rkv1.AssumedRole{}
			if err := p.client.Get(ctx, client.ObjectKey{Namespace: p.namespace, Name: name}, ar); err != nil {
				if ctx.Err() != nil {
					break
				}
				return err
			}
			if ar.Status.RotateRequest != value {
				if c := condition(ar, rkv1.ConditionReady); c.Status == metav1.ConditionFalse && waiting[name] != c.Reason {
					waiting[name] = c.Reason
					p.out.printf("waiting for %s/%s: Ready=False %s: %s\n", p.namespace, name, c.Reason, c.Message)
				}
				continue
			}
			delete(pending, name)
			if f := ar.Status.LastFailure; ar.Status.FailedAttempts > 0 && f != nil {
				failed = append(failed, name)
				p.out.printf("rotation of %s/%s failed with %s: %s\n", p.namespace, name, f.Code, f.Message)
				continue
			}
			now := p.now()
			p.out.printf("rotated %s/%s: new credentials in Secret %s issued at %s, valid until %s, next renewal %s\n",
				p.namespace, name, secretNameOf(ar), at(ar.Status.LastIssuedTime, now), at(ar.Status.Expiration, now), at(ar.Status.RenewalTime, now))
		}
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out after %v waiting for the operator to rotate %s; `kubectl rolekeeper explain NAME` says what it is waiting for",
				timeout, strings.Join(sortedKeys(pending), ", "))
		case <-tick.C:
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("rotation failed for %s", strings.Join(failed, ", "))
	}
	return nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
