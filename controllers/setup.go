package controllers

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
)

// sourceIndex indexes AssumedRoles by the name of their spec.source.assumedRoleRef.
const sourceIndex = "spec.source.assumedRoleRef.name"

// NewScheme returns a scheme with the built-in kinds and rolekeeper's, as the manager and its
// clients need.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(rkv1.AddToScheme(s))
	return s
}

// SetupWithManager registers the reconciler and its watches: AssumedRoles (spec and annotation
// changes, not their own status writes), the Secrets they own, AssumedRolePolicies and namespace
// labels (access may change), and the status and issuances of chain sources.
func (r *AssumedRoleReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	return r.setup(ctx, mgr, r)
}

// setup registers rec, which is r or a wrapper around it, as the reconciler of AssumedRoles.
func (r *AssumedRoleReconciler) setup(ctx context.Context, mgr ctrl.Manager, rec reconcile.Reconciler) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	if r.Recorder == nil {
		r.Recorder = mgr.GetEventRecorder("rolekeeper")
	}
	if err := mgr.GetFieldIndexer().IndexField(ctx, &rkv1.AssumedRole{}, sourceIndex, r.indexSource); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&rkv1.AssumedRole{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&corev1.Secret{}, builder.WithPredicates(secretChangedByOthers)).
		Watches(&rkv1.AssumedRolePolicy{}, handler.EnqueueRequestsFromMapFunc(r.allAssumedRoles)).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.assumedRolesIn), builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Watches(&rkv1.AssumedRole{}, handler.EnqueueRequestsFromMapFunc(r.dependents)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.dependentsOfSecret), builder.WithPredicates(issuances)).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Options.MaxConcurrentReconciles}).
		Complete(rec)
}

// secretChangedByOthers passes the Secret events that need a look: deletion, and changes that are
// not an issuance by the operator (which always moves rolekeeper.io/issued-at). The operator's own
// creates and rotations would only wake a reconcile that finds nothing to do, often from a cache
// that has not yet seen the status it just wrote.
var secretChangedByOthers = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	DeleteFunc:  func(event.DeleteEvent) bool { return true },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetAnnotations()[rkv1.AnnotationIssuedAt] == e.ObjectNew.GetAnnotations()[rkv1.AnnotationIssuedAt]
	},
}

// issuances passes the Secret events of an issuance: a new Secret, or new credentials in one.
var issuances = predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return true },
	DeleteFunc:  func(event.DeleteEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetAnnotations()[rkv1.AnnotationIssuedAt] != e.ObjectNew.GetAnnotations()[rkv1.AnnotationIssuedAt]
	},
}

// requests names the AssumedRoles of a list. The lists it is given are read from the cache
// without copies (client.UnsafeDisableDeepCopy): only names are taken from the shared objects, and
// a copy of each for that would cost a burst of deep copies on every policy, namespace or chain
// event, the more the more AssumedRoles there are.
func requests(list *rkv1.AssumedRoleList) []reconcile.Request {
	out := make([]reconcile.Request, len(list.Items))
	for i := range list.Items {
		out[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
	}
	return out
}

// allAssumedRoles re-queues every AssumedRole when a policy changes: policies are few and change
// rarely, and any of them may select any namespace.
func (r *AssumedRoleReconciler) allAssumedRoles(ctx context.Context, _ client.Object) []reconcile.Request {
	if !r.Options.RequireAccessPolicy {
		return nil
	}
	var list rkv1.AssumedRoleList
	if err := r.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing AssumedRoles after a policy change")
		return nil
	}
	return requests(&list)
}

func (r *AssumedRoleReconciler) assumedRolesIn(ctx context.Context, ns client.Object) []reconcile.Request {
	if !r.Options.RequireAccessPolicy || !r.serves(ns.GetName()) {
		return nil // namespaces are cluster-scoped: their watch sees those not served too
	}
	var list rkv1.AssumedRoleList
	if err := r.List(ctx, &list, client.InNamespace(ns.GetName()), client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing AssumedRoles after a namespace change", "namespace", ns.GetName())
		return nil
	}
	return requests(&list)
}

func (r *AssumedRoleReconciler) serves(namespace string) bool {
	return serves(r.Options.WatchNamespaces, namespace)
}

// dependents re-queues the AssumedRoles that chain from o, so they issue as soon as it is ready.
func (r *AssumedRoleReconciler) dependents(ctx context.Context, o client.Object) []reconcile.Request {
	return r.dependentsOf(ctx, o.GetNamespace(), o.GetName())
}

// dependentsOfSecret re-queues the AssumedRoles that chain from the owner of a Secret that was
// just issued, so that one waiting for fresh source credentials signs with them at once.
// The event is also the moment the cache may show an issuance this process wrote, which then
// need not be remembered (caughtUp).
func (r *AssumedRoleReconciler) dependentsOfSecret(ctx context.Context, o client.Object) []reconcile.Request {
	owner := o.GetLabels()[rkv1.LabelAssumedRole]
	r.caughtUp(ctx, types.NamespacedName{Namespace: o.GetNamespace(), Name: owner}, client.ObjectKeyFromObject(o))
	return r.dependentsOf(ctx, o.GetNamespace(), owner)
}

// caughtUp forgets the issue time last written for the AssumedRole key once the Secret as the
// reconciler reads it shows that issuance: from then on the cache needs no check (confirmDue),
// and nothing is held for the AssumedRole until its next issuance. The Secret is read, not taken
// from the event, so that the record goes only when what the reconciler reads has caught up.
func (r *AssumedRoleReconciler) caughtUp(ctx context.Context, key, secretKey types.NamespacedName) {
	last, wrote := r.written.Load(key)
	if !wrote {
		return
	}
	secret := &corev1.Secret{}
	if err := r.Get(ctx, secretKey, secret); err != nil {
		return
	}
	if st, issued := secretdata.ParseStamp(secret.Annotations); issued && !st.IssuedAt.Before(last.(time.Time)) {
		r.written.CompareAndDelete(key, last)
	}
}

// indexSource is the value of sourceIndex for an AssumedRole: the name of the AssumedRole it
// chains from, if any. It also records that some AssumedRole chains (sourced).
func (r *AssumedRoleReconciler) indexSource(o client.Object) []string {
	src := o.(*rkv1.AssumedRole).Spec.Source
	if src == nil {
		return nil
	}
	if !r.sourced.Load() {
		r.sourced.Store(true)
	}
	return []string{src.AssumedRoleRef.Name}
}

// dependentsOf lists the AssumedRoles of namespace that chain from source. Every AssumedRole
// event and every issuance asks it; while no AssumedRole has ever chained (most clusters) the
// answer is known to be none without a list: indexSource marks the first one before the index
// holds it, so a list could not have found any either.
func (r *AssumedRoleReconciler) dependentsOf(ctx context.Context, namespace, source string) []reconcile.Request {
	if source == "" || !r.sourced.Load() {
		return nil
	}
	var list rkv1.AssumedRoleList
	if err := r.List(ctx, &list, client.InNamespace(namespace), client.MatchingFields{sourceIndex: source}, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing dependent AssumedRoles", "source", source)
		return nil
	}
	return requests(&list)
}
