// Package access evaluates AssumedRolePolicies against a request: may an AssumedRole in this
// namespace assume this role (or this AssumeRoot target with this task policy) for this long?
// Pure functions of the policies, the namespace and the request.
package access

import (
	"fmt"
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

// Evaluate allows the request when at least one policy selects the namespace and allows it.
func Evaluate(policies []rkv1.AssumedRolePolicy, ns Namespace, req Request) Decision {
	sorted := append([]rkv1.AssumedRolePolicy(nil), policies...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var selecting []string
	var limits []string // why policies that allow the target refuse this request
	for i := range sorted {
		p := &sorted[i]
		if !Selects(&p.Spec, ns) {
			continue
		}
		selecting = append(selecting, p.Name)
		if !allowsTarget(&p.Spec, req) {
			continue
		}
		if why := refusal(&p.Spec, req); why != "" {
			limits = append(limits, p.Name+" "+why)
			continue
		}
		return Decision{Allowed: true, Policy: p.Name}
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
	if len(p.AllowedSessionNames) > 0 && !anyGlob(p.AllowedSessionNames, req.SessionName) {
		return fmt.Sprintf("allows session names %s (requested %s)", strings.Join(p.AllowedSessionNames, ", "), req.SessionName)
	}
	if req.SourceIdentity != "" && len(p.AllowedSourceIdentities) > 0 && !anyGlob(p.AllowedSourceIdentities, req.SourceIdentity) {
		return fmt.Sprintf("allows source identities %s (requested %s)", strings.Join(p.AllowedSourceIdentities, ", "), req.SourceIdentity)
	}
	return ""
}

func allowsTarget(p *rkv1.AssumedRolePolicySpec, req Request) bool {
	if req.RoleArn != "" {
		return anyGlob(p.AllowedRoleArns, req.RoleArn)
	}
	if !anyGlob(p.AllowedRootTargets, req.TargetPrincipal) {
		return false
	}
	for _, tp := range p.AllowedTaskPolicies {
		if tp == req.TaskPolicy {
			return true
		}
	}
	return false
}

func anyGlob(patterns []string, s string) bool {
	for _, p := range patterns {
		if Glob(p, s) {
			return true
		}
	}
	return false
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
