package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/controllers"
	"github.com/rolekeeper/rolekeeper/pkg/access"
	"github.com/rolekeeper/rolekeeper/pkg/renewal"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
)

func (p *plugin) explainCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "explain NAME [-n NAMESPACE]",
		Short: "Why an AssumedRole is or is not permitted, and when it renews next",
		Long: "explain shows an AssumedRole's conditions, evaluates the AssumedRolePolicies against its request exactly as the operator does " +
			"(which policies select its namespace, which rule allows or refuses it) and says when and why its credentials are next issued.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return p.explain(cmd.Context(), args[0])
		},
	}
}

func (p *plugin) explain(ctx context.Context, name string) error {
	ar := &rkv1.AssumedRole{}
	if err := p.client.Get(ctx, client.ObjectKey{Namespace: p.namespace, Name: name}, ar); err != nil {
		return err
	}
	now := p.now()
	req := controllers.AccessRequest(ar)
	p.out.printf("AssumedRole %s/%s\n", ar.Namespace, ar.Name)
	p.out.printf("  request:  %s\n", describeRequest(ar, req))
	for _, typ := range []string{rkv1.ConditionReady, rkv1.ConditionIssuing, rkv1.ConditionStalled} {
		c := condition(ar, typ)
		p.out.printf("  %-9s %s %s", typ+":", c.Status, c.Reason)
		if c.Message != "" {
			p.out.printf(": %s", c.Message)
		}
		p.out.printf("\n")
	}
	p.out.printf("\n")
	if err := p.explainAccess(ctx, ar, req); err != nil {
		return err
	}
	p.out.printf("\n")
	return p.explainRenewal(ctx, ar, now)
}

func describeRequest(ar *rkv1.AssumedRole, req access.Request) string {
	s := fmt.Sprintf("AssumeRole %s for %d s", req.RoleArn, req.DurationSeconds)
	if req.RoleArn == "" {
		s = fmt.Sprintf("AssumeRoot on %s with task policy %s for %d s", req.TargetPrincipal, req.TaskPolicy, req.DurationSeconds)
	}
	if src := ar.Spec.Source; src != nil {
		s += ", chained from AssumedRole " + src.AssumedRoleRef.Name
	}
	return s
}

// explainAccess evaluates the policies with pkg/access, as the operator does with
// --require-access-policy (its default).
func (p *plugin) explainAccess(ctx context.Context, ar *rkv1.AssumedRole, req access.Request) error {
	p.out.printf("Access (AssumedRolePolicies, as the operator evaluates them with --require-access-policy, the default):\n")
	var policies rkv1.AssumedRolePolicyList
	var ns corev1.Namespace
	err := p.client.List(ctx, &policies)
	if err == nil {
		err = p.client.Get(ctx, client.ObjectKey{Name: ar.Namespace}, &ns)
	}
	if apierrors.IsForbidden(err) {
		p.out.printf("  cannot read policies or the namespace (%v); the Ready condition above has the operator's verdict\n", err)
		return nil
	}
	if err != nil {
		return err
	}
	target := access.Namespace{Name: ns.Name, Labels: ns.Labels}
	verdicts := access.Explain(policies.Items, target, req)
	w := tabwriter.NewWriter(p.out, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(w, "  POLICY\tSELECTS NAMESPACE\tVERDICT")
	specs := map[string]*rkv1.AssumedRolePolicySpec{}
	for i := range policies.Items {
		specs[policies.Items[i].Name] = &policies.Items[i].Spec
	}
	for _, v := range verdicts {
		spec := specs[v.Policy]
		_, _ = fmt.Fprintf(w, "  %s\t%s\t%s\n", v.Policy, selection(spec, v, ns.Name), verdictText(spec, v, req))
	}
	_ = w.Flush()
	if len(verdicts) == 0 {
		p.out.printf("  (no AssumedRolePolicies in the cluster)\n")
	}
	if d := access.Evaluate(policies.Items, target, req); d.Allowed {
		p.out.printf("  decision: allowed by AssumedRolePolicy %s\n", d.Policy)
	} else {
		p.out.printf("  decision: refused: %s\n", d.Message)
	}
	return nil
}

func selection(spec *rkv1.AssumedRolePolicySpec, v access.Verdict, ns string) string {
	switch {
	case !v.Selects:
		return "no"
	case slices.Contains(spec.Namespaces, ns):
		return "yes, by name"
	default:
		return "yes, by namespaceSelector"
	}
}

func verdictText(spec *rkv1.AssumedRolePolicySpec, v access.Verdict, req access.Request) string {
	switch {
	case !v.Selects:
		return "-"
	case v.Allows && req.RoleArn != "":
		return "allows: allowedRoleArns " + strconv.Quote(v.Pattern)
	case v.Allows:
		return fmt.Sprintf("allows: allowedRootTargets %q with task policy %s", v.Pattern, req.TaskPolicy)
	case v.Refusal != "":
		return fmt.Sprintf("refuses: matches %q but %s", v.Pattern, v.Refusal)
	case req.RoleArn != "":
		return fmt.Sprintf("refuses: no allowedRoleArns pattern matches (%d patterns)", len(spec.AllowedRoleArns))
	case !v.TaskPolicyAllowed:
		return fmt.Sprintf("refuses: task policy %s is not in allowedTaskPolicies", req.TaskPolicy)
	default:
		return "refuses: no allowedRootTargets pattern matches " + req.TargetPrincipal
	}
}

// explainRenewal says when the credentials are next issued, and why then: from the Secret's
// stamp and the renewal policy (pkg/renewal, as the operator computes it), or the retry after
// failures.
func (p *plugin) explainRenewal(ctx context.Context, ar *rkv1.AssumedRole, now time.Time) error {
	p.out.printf("Renewal:\n")
	w := tabwriter.NewWriter(p.out, 0, 4, 1, ' ', 0)
	defer func() { _ = w.Flush() }()
	pol := controllers.RenewalPolicy(ar)
	_, _ = fmt.Fprintf(w, "  policy:\t%s\n", describePolicy(pol))
	if want, seen := ar.Annotations[rkv1.AnnotationRotate], ar.Status.RotateRequest; want != "" && want != seen {
		_, _ = fmt.Fprintf(w, "  rotation:\trequested (%s=%s), not yet answered\n", rkv1.AnnotationRotate, want)
	}
	secret, err := p.secret(ctx, ar)
	if err != nil {
		return err
	}
	if secret == nil {
		_, _ = fmt.Fprintf(w, "  Secret %s:\tdoes not exist (yet): credentials are issued as soon as the AssumedRole is permitted and Ready\n", secretNameOf(ar))
	} else if st, ok := stampOf(secret); ok {
		_, _ = fmt.Fprintf(w, "  credentials:\tissued %s, expire %s (a lifetime of %s), renewal slot %d\n",
			rfc3339(st.IssuedAt), at(&metav1.Time{Time: st.Expiration}, now), st.Expiration.Sub(st.IssuedAt), st.Slot)
		planned := renewal.Time(st.IssuedAt, st.Expiration, pol, renewal.Seed(string(ar.UID), st.Slot))
		_, _ = fmt.Fprintf(w, "  planned renewal:\t%s, by the policy above less the jitter of this AssumedRole and slot\n", at(&metav1.Time{Time: planned}, now))
	}
	switch f := ar.Status.LastFailure; {
	case ar.Status.FailedAttempts > 0 && f != nil:
		kind := "a terminal failure: retried every 10 minutes, or at once on a spec change or rotation"
		if f.Retryable {
			kind = "a retryable failure: backing off from 5 s up to 5 minutes"
		}
		_, _ = fmt.Fprintf(w, "  next attempt:\t%s, after %d failed attempts, the last with %s (%s)\n", at(ar.Status.RenewalTime, now), ar.Status.FailedAttempts, f.Code, kind)
	case ar.Status.RenewalTime != nil:
		_, _ = fmt.Fprintf(w, "  next renewal:\t%s (status.renewalTime)\n", at(ar.Status.RenewalTime, now))
	default:
		_, _ = fmt.Fprintln(w, "  next renewal:\tnot scheduled: the AssumedRole has no credentials; see the conditions above")
	}
	return nil
}

func describePolicy(p renewal.Policy) string {
	switch {
	case p.RenewBefore > 0:
		return fmt.Sprintf("renewBefore %s: renew that long before expiry, less a jitter of up to 5%% of the lifetime", p.RenewBefore)
	case p.RenewBeforePercentage > 0:
		return fmt.Sprintf("renewBeforePercentage %d: renew when %d%% of the lifetime remains, less a jitter of up to 5%%", p.RenewBeforePercentage, p.RenewBeforePercentage)
	default:
		return "default: renew at two thirds of the lifetime STS granted, less a jitter of up to 5% of it"
	}
}

// stampOf is the stamp of a Secret the operator wrote, and whether it says both when the
// credentials were issued and when they expire (what the plugin shows of it).
func stampOf(s *corev1.Secret) (secretdata.Stamp, bool) {
	st, issued := secretdata.ParseStamp(s.Annotations)
	return st, issued && !st.Expiration.IsZero()
}

// secret returns the AssumedRole's Secret, nil when there is none.
func (p *plugin) secret(ctx context.Context, ar *rkv1.AssumedRole) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := p.client.Get(ctx, client.ObjectKey{Namespace: ar.Namespace, Name: secretNameOf(ar)}, s)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return s, err
}
