package main

import (
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

// in says how far t is from now, as kubectl prints ages: "42m", or "3m ago" when past.
func in(t *metav1.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	if d := t.Sub(now); d >= 0 {
		return duration.HumanDuration(d)
	}
	return duration.HumanDuration(now.Sub(t.Time)) + " ago"
}

// at prints a time with its distance from now: "2026-11-22T21:38:49Z (in 42m)".
func at(t *metav1.Time, now time.Time) string {
	if t == nil {
		return "-"
	}
	if t.Sub(now) >= 0 {
		return fmt.Sprintf("%s (in %s)", rfc3339(t.Time), in(t, now))
	}
	return fmt.Sprintf("%s (%s)", rfc3339(t.Time), in(t, now))
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func condition(ar *rkv1.AssumedRole, typ string) metav1.Condition {
	if c := meta.FindStatusCondition(ar.Status.Conditions, typ); c != nil {
		return *c
	}
	return metav1.Condition{Type: typ, Status: metav1.ConditionUnknown}
}

// readyReason is the Ready reason, marked when the AssumedRole is also Stalled.
func readyReason(ar *rkv1.AssumedRole) string {
	r := condition(ar, rkv1.ConditionReady).Reason
	if r == "" {
		r = "-"
	}
	if condition(ar, rkv1.ConditionStalled).Status == metav1.ConditionTrue {
		r += " (stalled)"
	}
	return r
}

func lastFailure(ar *rkv1.AssumedRole, now time.Time) string {
	f := ar.Status.LastFailure
	if f == nil {
		return "-"
	}
	s := f.Code
	if f.Time != nil {
		s += " " + in(f.Time, now)
	}
	if n := ar.Status.FailedAttempts; n > 1 {
		s += fmt.Sprintf(" (%d attempts)", n)
	}
	return s
}

func secretNameOf(ar *rkv1.AssumedRole) string {
	switch {
	case ar.Status.SecretName != "":
		return ar.Status.SecretName
	case ar.Spec.Secret.Name != "":
		return ar.Spec.Secret.Name
	}
	return ar.Name
}
