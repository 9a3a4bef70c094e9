package controllers

import (
	"context"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
)

// +kubebuilder:rbac:groups=rolekeeper.io,resources=assumedroles,verbs=get;list;watch
// +kubebuilder:rbac:groups=rolekeeper.io,resources=assumedroles/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=rolekeeper.io,resources=assumedrolepolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// AssumedRoleReconciler keeps the Secret of each AssumedRole filled with valid credentials.
type AssumedRoleReconciler struct {
	client.Client
	Options Options
}

// Reconcile brings one AssumedRole's Secret and status up to date.
func (r *AssumedRoleReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return ctrl.Result{}, nil
}

// SetupWithManager registers the reconciler.
func (r *AssumedRoleReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&rkv1.AssumedRole{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Options.MaxConcurrentReconciles}).
		Complete(r)
}
