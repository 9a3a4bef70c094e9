package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

func (p *plugin) inspectCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NAME [-n NAMESPACE]",
		Short: "The AssumedRole's Secret: its keys, expiry and stamp, never a credential value",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return p.inspect(cmd.Context(), args[0])
		},
	}
}

// stampAnnotations are the Secret annotations the operator writes, in the order printed.
var stampAnnotations = []string{rkv1.AnnotationIssuedAt, rkv1.AnnotationExpiration, rkv1.AnnotationRequestHash, rkv1.AnnotationRenewalSlot, rkv1.AnnotationRotate}

func (p *plugin) inspect(ctx context.Context, name string) error {
	ar := &rkv1.AssumedRole{}
	if err := p.client.Get(ctx, client.ObjectKey{Namespace: p.namespace, Name: name}, ar); err != nil {
		return err
	}
	secret, err := p.secret(ctx, ar)
	if err != nil {
		return err
	}
	if secret == nil {
		return fmt.Errorf("AssumedRole %s/%s has no Secret %s yet: %s", ar.Namespace, ar.Name, secretNameOf(ar), condition(ar, rkv1.ConditionReady).Message)
	}
	now := p.now()
	owned := "no: this Secret belongs to someone else and the operator leaves it untouched (SecretConflict)"
	if metav1.IsControlledBy(secret, ar) {
		owned = "yes"
	}
	p.out.printf("Secret %s/%s of AssumedRole %s\n", secret.Namespace, secret.Name, ar.Name)
	p.out.printf("  type:        %s\n", secret.Type)
	p.out.printf("  owned:       %s\n", owned)
	if st, ok := stampOf(secret); ok {
		p.out.printf("  issued:      %s\n", at(&metav1.Time{Time: st.IssuedAt}, now))
		p.out.printf("  expires:     %s\n", at(&metav1.Time{Time: st.Expiration}, now))
	}
	p.out.printf("  keys (sizes only; values are never shown):\n")
	for _, k := range slices.Sorted(maps.Keys(secret.Data)) {
		p.out.printf("    %-28s %d bytes\n", k, len(secret.Data[k]))
	}
	p.out.printf("  stamp:\n")
	for _, a := range stampAnnotations {
		if v, ok := secret.Annotations[a]; ok {
			p.out.printf("    %s: %s\n", a, v)
		}
	}
	var labels []string
	for _, k := range slices.Sorted(maps.Keys(secret.Labels)) {
		labels = append(labels, k+"="+secret.Labels[k])
	}
	p.out.printf("  labels:      %s\n", strings.Join(labels, ", "))
	return nil
}
