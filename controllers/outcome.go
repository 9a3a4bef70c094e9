package controllers

import (
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
)

// outcome is what a step of a reconcile decided, said in words: proceed(), stalled(reason,
// message), waiting(reason, message), sleepUntil(t) or failed(err). run interprets it in one
// place, in the spirit of Flux's stalling, waiting and generic errors.
type outcome struct {
	// next is true when the reconcile goes on to the next step.
	next bool
	// blocked says why issuing cannot go on; run records it in status, with an event when it
	// is new.
	blocked *blocked
	// wake is when to reconcile again; zero: only when something changes.
	wake time.Time
	// err is retried with the controller's backoff.
	err error
}

// blocked is a reason issuing cannot go on. Stalled ones need a change elsewhere (the spec, a
// policy, AWS); the others wait for something that comes by itself.
type blocked struct {
	reason, message string
	stalled         bool
}

// proceed goes on to the next step.
func proceed() outcome { return outcome{next: true} }

// stalled ends the reconcile: nothing works until the spec, a policy, a namespace or AWS
// changes, and the watches bring that change.
func stalled(reason, message string) outcome {
	return outcome{blocked: &blocked{reason: reason, message: message, stalled: true}}
}

// waiting ends the reconcile until something that comes by itself, and is watched, arrives (a
// chain source's credentials).
func waiting(reason, message string) outcome {
	return outcome{blocked: &blocked{reason: reason, message: message}}
}

// sleepUntil ends the reconcile with nothing more to do before t: the next renewal, or the
// retry after a failure.
func sleepUntil(t time.Time) outcome { return outcome{wake: t} }

// failed ends the reconcile with an error, retried with the controller's backoff.
func failed(err error) outcome {
	if err == nil {
		return proceed()
	}
	return outcome{err: err}
}

// recheckAt also wakes a blocked reconcile at t, for a cause no watch reports (a Secret the
// operator does not own is not watched).
func (o outcome) recheckAt(t time.Time) outcome {
	o.wake = t
	return o
}

// result is the outcome for controller-runtime at now. A wake-up time already past (a renewal
// due by the time a slow call returned) wakes it after a second rather than never:
// controller-runtime ignores a delay that is not positive. An error never comes with a delay,
// which controller-runtime would drop.
func (o outcome) result(now time.Time) (ctrl.Result, error) {
	switch {
	case o.err != nil:
		return ctrl.Result{}, o.err
	case o.wake.IsZero():
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: max(o.wake.Sub(now), time.Second)}, nil
}
