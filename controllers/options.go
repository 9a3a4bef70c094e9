// Package controllers holds rolekeeper's reconcilers.
package controllers

// Options are the operator-wide settings that come from the manager's flags.
type Options struct {
	// Region is the default AWS region for AssumedRoles that set none.
	Region string
	// RequireAccessPolicy refuses AssumedRoles that no AssumedRolePolicy allows.
	RequireAccessPolicy bool
	// SessionTags adds kubernetes-namespace, kubernetes-name (and kubernetes-cluster) tags.
	SessionTags bool
	// ClusterName is sent as the kubernetes-cluster session tag when set.
	ClusterName string
	// MaxConcurrentReconciles bounds parallel reconciles of AssumedRoles.
	MaxConcurrentReconciles int
	// WatchNamespaces, when not empty, are the only namespaces served.
	WatchNamespaces []string
}
