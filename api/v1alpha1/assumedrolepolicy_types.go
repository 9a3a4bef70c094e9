package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AssumedRolePolicy says which namespaces may obtain which roles. With the operator's
// --require-access-policy (the default), an AssumedRole is issued only when at least one
// AssumedRolePolicy selects its namespace and allows its request; otherwise it is refused with
// reason NotPermitted and no call is made to AWS.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=arp,categories=rolekeeper;aws
// +kubebuilder:printcolumn:name="Namespaces",type=string,JSONPath=`.spec.namespaces`
// +kubebuilder:printcolumn:name="Roles",type=string,JSONPath=`.spec.allowedRoleArns`
// +kubebuilder:printcolumn:name="Max Duration",type=integer,JSONPath=`.spec.maxDurationSeconds`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AssumedRolePolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says whom the policy applies to and what it allows.
	// +required
	Spec AssumedRolePolicySpec `json:"spec"`
}

// AssumedRolePolicySpec selects namespaces and lists what AssumedRoles in them may request. A
// namespace is selected when it matches namespaceSelector or is listed in namespaces.
//
// +kubebuilder:validation:XValidation:rule="has(self.namespaceSelector) || (has(self.namespaces) && size(self.namespaces) > 0)",message="select namespaces with namespaceSelector (an empty selector {} selects all) or list them in namespaces"
// +kubebuilder:validation:XValidation:rule="(has(self.allowedRoleArns) && size(self.allowedRoleArns) > 0) || (has(self.allowedRootTargets) && size(self.allowedRootTargets) > 0)",message="the policy allows nothing: set allowedRoleArns and/or allowedRootTargets with allowedTaskPolicies"
// +kubebuilder:validation:XValidation:rule="(has(self.allowedRootTargets) && size(self.allowedRootTargets) > 0) == (has(self.allowedTaskPolicies) && size(self.allowedTaskPolicies) > 0)",message="allowedRootTargets and allowedTaskPolicies go together: AssumeRoot is granted for targets and the task policies they may use"
type AssumedRolePolicySpec struct {
	// namespaceSelector selects namespaces by label. An empty selector ({}) selects every
	// namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`

	// namespaces lists namespaces by name, in addition to namespaceSelector. At most 256.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="each namespaces entry must be a namespace name: lowercase letters, digits and '-'"
	Namespaces []string `json:"namespaces,omitempty"`

	// allowedRoleArns are glob patterns of role ARNs that may be assumed: '*' matches any run of
	// characters, '?' exactly one, for example arn:aws:iam::111122223333:role/team-a-*.
	// At most 256 patterns of 1-2048 characters, no whitespace.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=2048
	// +kubebuilder:validation:items:XValidation:rule="size(self) > 0 && !self.matches('[[:space:]]')",message="allowedRoleArns patterns must be non-empty and contain no whitespace, for example arn:aws:iam::111122223333:role/team-a-*"
	AllowedRoleArns []string `json:"allowedRoleArns,omitempty"`

	// allowedRootTargets are glob patterns of AssumeRoot target principals (account IDs or
	// principal ARNs) that may be used. Requires allowedTaskPolicies. At most 256 patterns of
	// 1-2048 characters, no whitespace.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	// +kubebuilder:validation:items:MaxLength=2048
	// +kubebuilder:validation:items:XValidation:rule="size(self) > 0 && !self.matches('[[:space:]]')",message="allowedRootTargets patterns must be non-empty and contain no whitespace, for example 444455556666 or 4444*"
	AllowedRootTargets []string `json:"allowedRootTargets,omitempty"`

	// allowedTaskPolicies are the AssumeRoot task policies allowed for allowedRootTargets.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=5
	AllowedTaskPolicies []RootTaskPolicy `json:"allowedTaskPolicies,omitempty"`

	// allowedSessionNames are glob patterns ('*' any run of characters, '?' one) of the role
	// session names AssumedRoles may use: the name they set in assumeRole.sessionName, or the
	// default "<namespace>.<name>". Role trust policies that test sts:RoleSessionName rely on it,
	// so without this list any namespace the policy selects can claim any session name. Unset or
	// empty: every session name. At most 64 patterns of 1-128 characters.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	AllowedSessionNames []string `json:"allowedSessionNames,omitempty"`

	// allowedSourceIdentities are glob patterns of the assumeRole.sourceIdentity values AssumedRoles
	// may set. Trust policies that test sts:SourceIdentity rely on it, and a source identity stays
	// with every session chained from it. Unset or empty: any value. An AssumedRole that sets no
	// source identity is always allowed. At most 64 patterns of 1-128 characters.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	AllowedSourceIdentities []string `json:"allowedSourceIdentities,omitempty"`

	// maxDurationSeconds caps the requested session duration: 1-43200. An AssumedRole asking for
	// more is refused (NotPermitted). Default: no cap beyond AWS's own.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=43200
	MaxDurationSeconds *int32 `json:"maxDurationSeconds,omitempty"`
}

// AssumedRolePolicyList is a list of AssumedRolePolicies.
//
// +kubebuilder:object:root=true
type AssumedRolePolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AssumedRolePolicy `json:"items"`
}
