package controllers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/patch"
)

// +kubebuilder:rbac:groups=rolekeeper.io,resources=clusterassumedroles,verbs=get;list;watch
// +kubebuilder:rbac:groups=rolekeeper.io,resources=clusterassumedroles/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=rolekeeper.io,resources=clusterassumedroles/finalizers,verbs=update
// +kubebuilder:rbac:groups=rolekeeper.io,resources=assumedroles,verbs=get;list;watch;create;patch;delete

// ClusterAssumedRoleReconciler keeps one AssumedRole per selected namespace for each
// ClusterAssumedRole, and reports how they are doing. It never calls AWS: each AssumedRole is
// issued (or refused by AssumedRolePolicies) by the AssumedRole reconciler.
type ClusterAssumedRoleReconciler struct {
	client.Client
	Options Options
}

// Reconcile creates, updates and deletes the AssumedRoles of one ClusterAssumedRole and writes
// its status.
func (r *ClusterAssumedRoleReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	car := &rkv1.ClusterAssumedRole{}
	if err := r.Get(ctx, req.NamespacedName, car); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !car.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil // its AssumedRoles go with it through their owner references
	}
	before := *car.Status.DeepCopy()
	err := r.sync(ctx, car)
	if !equality.Semantic.DeepEqual(before, car.Status) {
		p := patch.Status{Before: &before, After: &car.Status, ResourceVersion: car.ResourceVersion}
		if perr := r.Status().Patch(ctx, car, p); perr != nil && err == nil {
			err = perr
		}
	}
	return ctrl.Result{}, err
}

// sync brings the AssumedRoles of the selected namespaces in line with the template, removes
// those of namespaces no longer selected, and sets status from how they are doing.
func (r *ClusterAssumedRoleReconciler) sync(ctx context.Context, car *rkv1.ClusterAssumedRole) error {
	selector, err := metav1.LabelSelectorAsSelector(&car.Spec.NamespaceSelector)
	if err != nil {
		setClusterReady(car, metav1.ConditionFalse, rkv1.ReasonInvalidSelector, "spec.namespaceSelector: "+err.Error())
		return nil //nolint:nilerr // reported in status; only a spec change can fix it
	}
	selected, err := r.selectedNamespaces(ctx, selector)
	if err != nil {
		return err
	}
	owned, err := r.owned(ctx, car)
	if err != nil {
		return err
	}
	if err := r.prune(ctx, owned, selected); err != nil {
		return err
	}
	var counts namespaceCounts
	counts.selected = int32(len(selected)) //nolint:gosec // a namespace count fits
	for _, ns := range slices.Sorted(maps.Keys(selected)) {
		ar, err := r.ensure(ctx, car, ns, owned[ns])
		var taken *assumedRoleTaken
		switch {
		case errors.As(err, &taken):
			counts.failed(rkv1.NamespaceFailure{Namespace: ns, Reason: rkv1.ReasonAssumedRoleConflict, Message: taken.Error()})
			continue
		case err != nil:
			return err
		}
		counts.add(ns, ar)
	}
	setClusterStatus(car, counts)
	return nil
}

// owned are the AssumedRoles the ClusterAssumedRole controls, by namespace.
func (r *ClusterAssumedRoleReconciler) owned(ctx context.Context, car *rkv1.ClusterAssumedRole) (map[string]*rkv1.AssumedRole, error) {
	var children rkv1.AssumedRoleList
	if err := r.List(ctx, &children, client.MatchingLabels{rkv1.LabelClusterAssumedRole: car.Name}); err != nil {
		return nil, err
	}
	owned := map[string]*rkv1.AssumedRole{}
	for i := range children.Items {
		if ar := &children.Items[i]; metav1.IsControlledBy(ar, car) {
			owned[ar.Namespace] = ar
		}
	}
	return owned, nil
}

// prune deletes the AssumedRoles of namespaces that are no longer selected (and through them
// their Secrets), each only as it was read.
func (r *ClusterAssumedRoleReconciler) prune(ctx context.Context, owned map[string]*rkv1.AssumedRole, selected map[string]bool) error {
	for ns, ar := range owned {
		if selected[ns] {
			continue
		}
		uid, rv := ar.UID, ar.ResourceVersion
		if err := r.Delete(ctx, ar, client.Preconditions{UID: &uid, ResourceVersion: &rv}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting AssumedRole %s/%s of a namespace no longer selected: %w", ns, ar.Name, err)
		}
		ctrl.LoggerFrom(ctx).Info("deleted AssumedRole of a namespace no longer selected", "namespace", ns)
	}
	return nil
}

// selectedNamespaces are the served, live namespaces the selector picks.
func (r *ClusterAssumedRoleReconciler) selectedNamespaces(ctx context.Context, selector labels.Selector) (map[string]bool, error) {
	var list corev1.NamespaceList
	if err := r.List(ctx, &list, client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, ns := range list.Items {
		if ns.DeletionTimestamp.IsZero() && ns.Status.Phase != corev1.NamespaceTerminating && serves(r.Options.WatchNamespaces, ns.Name) {
			out[ns.Name] = true
		}
	}
	return out, nil
}

// assumedRoleTaken: an AssumedRole of the ClusterAssumedRole's name exists in the namespace and
// is someone else's; it is left untouched and reported.
type assumedRoleTaken struct{ namespace, name string }

func (e *assumedRoleTaken) Error() string {
	return fmt.Sprintf("AssumedRole %s/%s exists and is not owned by this ClusterAssumedRole; it is left untouched", e.namespace, e.name)
}

// ensure makes the namespace's AssumedRole match the template. It fails with *assumedRoleTaken
// when an AssumedRole of that name exists there and is not this ClusterAssumedRole's.
func (r *ClusterAssumedRoleReconciler) ensure(ctx context.Context, car *rkv1.ClusterAssumedRole, ns string, cur *rkv1.AssumedRole) (*rkv1.AssumedRole, error) {
	if cur == nil {
		ar := &rkv1.AssumedRole{ObjectMeta: metav1.ObjectMeta{Name: car.Name, Namespace: ns}}
		r.apply(car, ar)
		if err := controllerutil.SetControllerReference(car, ar, r.Scheme()); err != nil {
			return nil, err
		}
		err := r.Create(ctx, ar)
		switch {
		case err == nil:
			ctrl.LoggerFrom(ctx).Info("created AssumedRole", "namespace", ns)
			return ar, nil
		case !apierrors.IsAlreadyExists(err):
			return nil, fmt.Errorf("creating AssumedRole %s/%s: %w", ns, car.Name, err)
		}
		cur = &rkv1.AssumedRole{}
		if err := r.Get(ctx, client.ObjectKeyFromObject(ar), cur); err != nil {
			return nil, err
		}
		if !metav1.IsControlledBy(cur, car) {
			return nil, &assumedRoleTaken{namespace: ns, name: car.Name}
		}
		// Ours, with its label removed: the update below restores it.
	}
	want := cur.DeepCopy()
	r.apply(car, want)
	if equality.Semantic.DeepEqual(cur.Spec, want.Spec) && equality.Semantic.DeepEqual(cur.Labels, want.Labels) && equality.Semantic.DeepEqual(cur.Annotations, want.Annotations) {
		return cur, nil
	}
	// A patch of what differs, not an update: the cache's copy lacks what it does not keep (the
	// last-applied annotation), which an update would remove. The resource version makes it
	// fail like an update when the AssumedRole changed meanwhile.
	if err := r.Patch(ctx, want, client.MergeFromWithOptions(cur, client.MergeFromWithOptimisticLock{})); err != nil {
		return nil, fmt.Errorf("updating AssumedRole %s/%s: %w", ns, car.Name, err)
	}
	return want, nil
}

// apply sets the template on ar. Labels and annotations of the template are added; others (such
// as a rolekeeper.io/rotate set on one namespace's AssumedRole) are kept.
func (r *ClusterAssumedRoleReconciler) apply(car *rkv1.ClusterAssumedRole, ar *rkv1.AssumedRole) {
	t := car.Spec.Template
	ar.Spec = *t.Spec.DeepCopy()
	if ar.Labels == nil {
		ar.Labels = map[string]string{}
	}
	maps.Copy(ar.Labels, t.Metadata.Labels)
	ar.Labels[rkv1.LabelClusterAssumedRole] = car.Name
	if len(t.Metadata.Annotations) > 0 {
		if ar.Annotations == nil {
			ar.Annotations = map[string]string{}
		}
		maps.Copy(ar.Annotations, t.Metadata.Annotations)
	}
}

func serves(watched []string, namespace string) bool {
	return len(watched) == 0 || slices.Contains(watched, namespace)
}

// SetupWithManager watches ClusterAssumedRoles, the AssumedRoles they own (their status is what
// the counts report) and namespaces (labels decide selection; creation and deletion too).
func (r *ClusterAssumedRoleReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&rkv1.ClusterAssumedRole{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&rkv1.AssumedRole{}).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.all)).
		Complete(r)
}

// all re-queues every ClusterAssumedRole when a namespace appears, goes or is relabelled: they
// are few, and any of them may select it.
func (r *ClusterAssumedRoleReconciler) all(ctx context.Context, _ client.Object) []reconcile.Request {
	var list rkv1.ClusterAssumedRoleList
	if err := r.List(ctx, &list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "listing ClusterAssumedRoles after a namespace change")
		return nil
	}
	out := make([]reconcile.Request, len(list.Items))
	for i := range list.Items {
		out[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])}
	}
	return out
}
