package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

func (p *plugin) statusCommand() *cobra.Command {
	var all, watchFlag bool
	cmd := &cobra.Command{
		Use:   "status [-A | -n NAMESPACE] [--watch]",
		Short: "One line per AssumedRole: Ready, reason, expiry, next renewal, last failure",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ns := p.namespace
			if all {
				ns = ""
			}
			return p.status(cmd.Context(), ns, watchFlag)
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "List AssumedRoles in every namespace.")
	cmd.Flags().BoolVarP(&watchFlag, "watch", "w", false, "After the list, print a line whenever an AssumedRole changes, until interrupted.")
	return cmd
}

// statusTable prints AssumedRoles aligned in columns; the NAMESPACE column only across
// namespaces.
type statusTable struct {
	w      *tabwriter.Writer
	withNS bool
	plugin *plugin
}

func (p *plugin) newStatusTable(out io.Writer, withNS bool) *statusTable {
	return &statusTable{w: tabwriter.NewWriter(out, 0, 4, 2, ' ', 0), withNS: withNS, plugin: p}
}

func (t *statusTable) header() {
	if t.withNS {
		_, _ = fmt.Fprint(t.w, "NAMESPACE\t")
	}
	_, _ = fmt.Fprintln(t.w, "NAME\tREADY\tREASON\tEXPIRES IN\tRENEWS IN\tLAST FAILURE")
}

func (t *statusTable) row(ar *rkv1.AssumedRole) {
	now := t.plugin.now()
	if t.withNS {
		_, _ = fmt.Fprintf(t.w, "%s\t", ar.Namespace)
	}
	_, _ = fmt.Fprintf(t.w, "%s\t%s\t%s\t%s\t%s\t%s\n", ar.Name, condition(ar, rkv1.ConditionReady).Status, readyReason(ar),
		in(ar.Status.Expiration, now), in(ar.Status.RenewalTime, now), lastFailure(ar, now))
}

func (t *statusTable) flush() { _ = t.w.Flush() }

func (p *plugin) status(ctx context.Context, ns string, follow bool) error {
	var list rkv1.AssumedRoleList
	if err := p.client.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	sort.Slice(list.Items, func(i, j int) bool {
		a, b := &list.Items[i], &list.Items[j]
		return a.Namespace < b.Namespace || a.Namespace == b.Namespace && a.Name < b.Name
	})
	table := p.newStatusTable(p.out, ns == "")
	if len(list.Items) == 0 && !follow {
		where := "in namespace " + ns
		if ns == "" {
			where = "in any namespace"
		}
		p.out.printf("No AssumedRoles %s.\n", where)
		return nil
	}
	table.header()
	for i := range list.Items {
		table.row(&list.Items[i])
	}
	table.flush()
	if !follow {
		return nil
	}
	return p.follow(ctx, ns, list.ResourceVersion, table)
}

// follow prints a row for every change after resourceVersion until ctx ends, re-watching when
// the API server closes the watch and re-listing when it has compacted past the last version.
func (p *plugin) follow(ctx context.Context, ns, resourceVersion string, table *statusTable) error {
	for {
		w, err := p.client.Watch(ctx, &rkv1.AssumedRoleList{}, client.InNamespace(ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: resourceVersion, AllowWatchBookmarks: true}})
		if err != nil {
			if ctx.Err() != nil {
				return nil //nolint:nilerr // interrupted: the watch ends as asked
			}
			return err
		}
		resourceVersion, err = p.printEvents(ctx, w, resourceVersion, table)
		w.Stop()
		switch {
		case ctx.Err() != nil:
			return nil //nolint:nilerr // interrupted: the watch ends as asked
		case apierrors.IsResourceExpired(err) || apierrors.IsGone(err):
			var list rkv1.AssumedRoleList
			if err := p.client.List(ctx, &list, client.InNamespace(ns)); err != nil {
				return err
			}
			resourceVersion = list.ResourceVersion
		case err != nil:
			return err
		}
	}
}

func (p *plugin) printEvents(ctx context.Context, w watch.Interface, resourceVersion string, table *statusTable) (string, error) {
	for {
		select {
		case <-ctx.Done():
			return resourceVersion, nil
		case ev, ok := <-w.ResultChan():
			if !ok {
				return resourceVersion, nil
			}
			if ev.Type == watch.Error {
				return resourceVersion, apierrors.FromObject(ev.Object)
			}
			ar, ok := ev.Object.(*rkv1.AssumedRole)
			if !ok {
				continue
			}
			resourceVersion = ar.ResourceVersion
			switch ev.Type {
			case watch.Added, watch.Modified:
				table.row(ar)
			case watch.Deleted:
				if table.withNS {
					_, _ = fmt.Fprintf(table.w, "%s\t", ar.Namespace)
				}
				_, _ = fmt.Fprintf(table.w, "%s\tdeleted\n", ar.Name)
			}
			table.flush()
		}
	}
}
