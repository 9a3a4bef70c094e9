// Package v1alpha1 holds the rolekeeper.io/v1alpha1 API: AssumedRole, which asks the operator to
// keep AWS temporary credentials fresh in a Secret, and AssumedRolePolicy, which says which
// namespaces may ask for which roles.
//
// +kubebuilder:object:generate=true
// +groupName=rolekeeper.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "rolekeeper.io", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this package with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the kinds of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
