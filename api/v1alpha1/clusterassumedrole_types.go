package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ClusterAssumedRole fans one AssumedRole out to many namespaces: for every namespace its
// namespaceSelector picks, it creates and owns an AssumedRole of the same name with the template's
// spec. Each of those issues its own session, with its own kubernetes-namespace session tag, and
// is allowed or refused by AssumedRolePolicies like any other AssumedRole. Namespaces that start
// or stop matching gain or lose their AssumedRole (and with it the Secret).
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=car,categories=rolekeeper;aws
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.template.spec.assumeRole.roleArn`
// +kubebuilder:printcolumn:name="Selected",type=integer,JSONPath=`.status.selectedNamespaces`
// +kubebuilder:printcolumn:name="Ready Namespaces",type=integer,JSONPath=`.status.readyNamespaces`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="!has(self.spec.template.spec.source) || self.spec.template.spec.source.assumedRoleRef.name != self.metadata.name",message="spec.template.spec.source.assumedRoleRef.name must name another AssumedRole: each generated AssumedRole is named after the ClusterAssumedRole and cannot chain from itself"
type ClusterAssumedRole struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which namespaces get an AssumedRole and what it asks for.
	// +required
	Spec ClusterAssumedRoleSpec `json:"spec"`

	// status counts the selected and ready namespaces and lists those failing.
	// +optional
	Status ClusterAssumedRoleStatus `json:"status,omitempty"`
}

// ClusterAssumedRoleSpec is the desired state of a ClusterAssumedRole.
type ClusterAssumedRoleSpec struct {
	// namespaceSelector picks the namespaces by label; {} picks every namespace (those the
	// operator watches, with --watch-namespaces). Namespaces being deleted are skipped.
	// +required
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector"`

	// template is the AssumedRole created in each selected namespace, named after the
	// ClusterAssumedRole.
	// +required
	Template AssumedRoleTemplate `json:"template"`
}

// AssumedRoleTemplate is the AssumedRole a ClusterAssumedRole creates in each namespace.
type AssumedRoleTemplate struct {
	// metadata adds labels and annotations to each AssumedRole.
	// +optional
	Metadata TemplateMetadata `json:"metadata,omitempty"`

	// spec of each AssumedRole. spec.secret.name, when set, is the Secret's name in every
	// namespace.
	// +required
	Spec AssumedRoleSpec `json:"spec"`
}

// TemplateMetadata are labels and annotations set on generated objects.
type TemplateMetadata struct {
	// labels of each AssumedRole. At most 32; the rolekeeper.io/ prefix is reserved.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('rolekeeper.io/'))",message="template.metadata.labels must not use the reserved rolekeeper.io/ prefix"
	Labels map[string]string `json:"labels,omitempty"`

	// annotations of each AssumedRole. At most 32. rolekeeper.io/rotate may be set here to rotate
	// every namespace's credentials at once.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ClusterAssumedRoleStatus is the observed state of a ClusterAssumedRole.
type ClusterAssumedRoleStatus struct {
	// conditions: Ready is True when every selected namespace's AssumedRole is Ready.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the spec generation the counts describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// selectedNamespaces counts the namespaces the selector picks.
	// +optional
	SelectedNamespaces int32 `json:"selectedNamespaces"`

	// readyNamespaces counts the selected namespaces whose AssumedRole is Ready.
	// +optional
	ReadyNamespaces int32 `json:"readyNamespaces"`

	// failedNamespaces counts the selected namespaces whose AssumedRole is failing (or cannot
	// be created); failures lists the first of them by name.
	// +optional
	FailedNamespaces int32 `json:"failedNamespaces"`

	// failures are up to 32 failing namespaces, sorted by name, with the reason and message of
	// their AssumedRole's Ready condition.
	// +optional
	// +listType=map
	// +listMapKey=namespace
	// +kubebuilder:validation:MaxItems=32
	Failures []NamespaceFailure `json:"failures,omitempty"`
}

// NamespaceFailure is why one namespace's AssumedRole is not Ready.
type NamespaceFailure struct {
	// namespace of the AssumedRole.
	// +required
	Namespace string `json:"namespace"`
	// reason of its Ready condition (for example NotPermitted), or AssumedRoleConflict when an
	// AssumedRole of that name exists there and belongs to someone else.
	// +optional
	Reason string `json:"reason,omitempty"`
	// message of its Ready condition.
	// +optional
	Message string `json:"message,omitempty"`
}

// ClusterAssumedRoleList is a list of ClusterAssumedRoles.
//
// +kubebuilder:object:root=true
type ClusterAssumedRoleList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterAssumedRole `json:"items"`
}
