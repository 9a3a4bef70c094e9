// Package v1alpha1 holds the rolekeeper.io/v1alpha1 API: AssumedRole, which asks the operator to
// keep AWS temporary credentials fresh in a Secret, and AssumedRolePolicy, which says which
// namespaces may ask for which roles.
//
// +kubebuilder:object:generate=true
// +groupName=rolekeeper.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of every kind in this package.
	GroupVersion = schema.GroupVersion{Group: "rolekeeper.io", Version: "v1alpha1"}

	// SchemeBuilder registers the kinds of this package with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the kinds of this package to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &AssumedRole{}, &AssumedRoleList{}, &AssumedRolePolicy{}, &AssumedRolePolicyList{},
		&ClusterAssumedRole{}, &ClusterAssumedRoleList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
