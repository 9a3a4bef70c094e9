// Package access evaluates AssumedRolePolicies against a request: may an AssumedRole in this
// namespace assume this role (or this AssumeRoot target with this task policy) for this long?
// Pure functions of the policies, the namespace and the request.
package access

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

// Namespace is the namespace of the AssumedRole.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Request is what an AssumedRole asks for.
type Request struct {
	// RoleArn for AssumeRole; empty for AssumeRoot.
	RoleArn string
	// TargetPrincipal and TaskPolicy for AssumeRoot.
	TargetPrincipal string
	TaskPolicy      rkv1.RootTaskPolicy
	DurationSeconds int32
	// SessionName and SourceIdentity of an AssumeRole request: the session name as sent (the
	// default when the spec sets none), the source identity empty when none is set.
	SessionName    string
	SourceIdentity string
}

// Decision is the outcome. Message explains a denial in terms a namespace owner can act on.
type Decision struct {
	Allowed bool
	// Policy is the policy that allowed the request.
	Policy  string
	Message string
}

// Verdict is what one AssumedRolePolicy says about a request.
type Verdict struct {
	Policy string
	// Selects is true when the policy applies to the namespace.
	Selects bool
	// Pattern is the allowedRoleArns (or allowedRootTargets) pattern that matched the request;
	// empty when none did, or when the task policy is not allowed.
	Pattern string
	// TaskPolicyAllowed is true for AssumeRoot when allowedTaskPolicies lists the task policy.
	TaskPolicyAllowed bool
	// Refusal says why a policy that allows the target refuses the rest of the request (its
	// duration cap, its session names, its source identities); empty otherwise.
	Refusal string
	// Allows is true when the policy allows the request.
	Allows bool
}

// Explain returns the verdict of every policy, ordered by name: Evaluate's reasoning, one policy
// at a time.
func Explain(policies []rkv1.AssumedRolePolicy, ns Namespace, req Request) []Verdict {
	sorted := append([]rkv1.AssumedRolePolicy(nil), policies...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	out := make([]Verdict, len(sorted))
	for i := range sorted {
		p := &sorted[i]
		v := Verdict{Policy: p.Name, Selects: Selects(&p.Spec, ns)}
		if v.Selects {
			v.Pattern, v.TaskPolicyAllowed = allowedTarget(&p.Spec, req)
			if v.Pattern != "" {
				v.Refusal = refusal(&p.Spec, req)
				v.Allows = v.Refusal == ""
			}
		}
		out[i] = v
	}
	return out
}

// Evaluate allows the request when at least one policy selects the namespace and allows it.
func Evaluate(policies []rkv1.AssumedRolePolicy, ns Namespace, req Request) Decision {
	var selecting []string
	var limits []string // why policies that allow the target refuse this request
	for _, v := range Explain(policies, ns, req) {
		if v.Allows {
			return Decision{Allowed: true, Policy: v.Policy}
		}
		if v.Selects {
			selecting = append(selecting, v.Policy)
		}
		if v.Refusal != "" {
			limits = append(limits, v.Policy+" "+v.Refusal)
		}
	}
	what := "role " + req.RoleArn
	if req.RoleArn == "" {
		what = fmt.Sprintf("AssumeRoot on %s with task policy %s", req.TargetPrincipal, req.TaskPolicy)
	}
	switch {
	case len(selecting) == 0:
		return Decision{Message: fmt.Sprintf("no AssumedRolePolicy selects namespace %s; a cluster administrator must create one that allows %s", ns.Name, what)}
	case len(limits) > 0:
		return Decision{Message: fmt.Sprintf("%s is allowed in namespace %s, but not as requested: %s", what, ns.Name, strings.Join(limits, "; "))}
	default:
		return Decision{Message: fmt.Sprintf("AssumedRolePolicies %s select namespace %s but none allows %s", strings.Join(selecting, ", "), ns.Name, what)}
	}
}

// Selects reports whether the policy applies to the namespace.
func Selects(p *rkv1.AssumedRolePolicySpec, ns Namespace) bool {
	for _, name := range p.Namespaces {
		if name == ns.Name {
			return true
		}
	}
	if p.NamespaceSelector == nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(p.NamespaceSelector)
	if err != nil {
		return false // an invalid selector selects nothing
	}
	return sel.Matches(labels.Set(ns.Labels))
}

// refusal says why a policy that allows the target refuses the rest of the request, or "".
func refusal(p *rkv1.AssumedRolePolicySpec, req Request) string {
	if max := p.MaxDurationSeconds; max != nil && req.DurationSeconds > *max {
		return fmt.Sprintf("caps sessions at %d s (requested %d s)", *max, req.DurationSeconds)
	}
	if req.RoleArn == "" {
		return ""
	}
	if len(p.AllowedSessionNames) > 0 && firstGlob(p.AllowedSessionNames, req.SessionName) == "" {
		return fmt.Sprintf("allows session names %s (requested %s)", strings.Join(p.AllowedSessionNames, ", "), req.SessionName)
	}
	if req.SourceIdentity != "" && len(p.AllowedSourceIdentities) > 0 && firstGlob(p.AllowedSourceIdentities, req.SourceIdentity) == "" {
		return fmt.Sprintf("allows source identities %s (requested %s)", strings.Join(p.AllowedSourceIdentities, ", "), req.SourceIdentity)
	}
	return ""
}

// allowedTarget returns the pattern that allows the request's role (or AssumeRoot target), and
// for AssumeRoot whether its task policy is allowed; the pattern is "" unless both hold.
func allowedTarget(p *rkv1.AssumedRolePolicySpec, req Request) (pattern string, taskPolicy bool) {
	if req.RoleArn != "" {
		return firstGlob(p.AllowedRoleArns, req.RoleArn), false
	}
	taskPolicy = slices.Contains(p.AllowedTaskPolicies, req.TaskPolicy)
	if !taskPolicy {
		return "", false
	}
	return firstGlob(p.AllowedRootTargets, req.TargetPrincipal), true
}

func firstGlob(patterns []string, s string) string {
	for _, p := range patterns {
		if Glob(p, s) {
			return p
		}
	}
	return ""
}

// Glob matches s against pattern, where '*' matches any run of characters (including '/' and
// ':') and '?' exactly one; everything else matches itself. Matching is linear in the input.
func Glob(pattern, s string) bool {
	p, i := chars(pattern), chars(s)
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(i) {
		switch {
		case pi < len(p) && p[pi] == "*":
			star, mark = pi, si
			pi++
		case pi < len(p) && (p[pi] == "?" || p[pi] == i[si]):
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == "*" {
		pi++
	}
	return pi == len(p)
}

// chars splits s into its characters, each kept as its own bytes so that distinct invalid UTF-8
// bytes stay distinct.
func chars(s string) []string {
	out := make([]string, 0, len(s))
	for len(s) > 0 {
		_, n := utf8.DecodeRuneInString(s)
		out = append(out, s[:n])
		s = s[n:]
	}
	return out
}
