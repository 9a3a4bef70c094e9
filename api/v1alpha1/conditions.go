package v1alpha1

// Condition types of an AssumedRole. They follow kstatus: Ready is the summary; Issuing is true
// while an issuance is due or running (kstatus "Reconciling"); Stalled is true when progress needs
// a change outside the operator.
const (
	// ConditionReady is True when the Secret holds valid credentials for the current spec.
	ConditionReady = "Ready"
	// ConditionIssuing is True while credentials are due to be (re-)issued; its reason says why.
	ConditionIssuing = "Issuing"
	// ConditionStalled is True when issuing cannot succeed until something changes: the spec, an
	// AssumedRolePolicy, or the role's configuration in AWS.
	ConditionStalled = "Stalled"
)

// Reasons used in conditions and events.
const (
	// ReasonIssued: credentials were issued and written to the Secret.
	ReasonIssued = "Issued"
	// ReasonRenewed: credentials were re-issued ahead of expiry and the Secret updated in place.
	ReasonRenewed = "Renewed"
	// ReasonIssueFailed: the last call to STS failed; see status.lastFailure.
	ReasonIssueFailed = "IssueFailed"
	// ReasonNotPermitted: no AssumedRolePolicy allows this request in this namespace.
	ReasonNotPermitted = "NotPermitted"
	// ReasonSecretConflict: a Secret of the target name exists and is not owned by this
	// AssumedRole; it is left untouched.
	ReasonSecretConflict = "SecretConflict"
	// ReasonSourceNotReady: the AssumedRole named in source.assumedRoleRef has no valid credentials.
	ReasonSourceNotReady = "SourceNotReady"
	// ReasonInvalidSpec: the spec passed admission but cannot be sent to AWS as it is (for example
	// AssumeRoot without any region).
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonTemplateInvalid: spec.secret.template does not render; the Secret is left as it was.
	ReasonTemplateInvalid = "TemplateInvalid"
	// ReasonRoleChainingLimit: the operator's own identity is a role session (IRSA, EKS Pod
	// Identity, an instance profile), so AWS caps every session it assumes at one hour, and the
	// spec asks for more. Refused before any call to AWS.
	ReasonRoleChainingLimit = "RoleChainingLimit"
	// ReasonRegionUnknown: the region's STS endpoint does not exist in DNS; no such region.
	ReasonRegionUnknown = "RegionUnknown"
	// ReasonTransitiveTagConflict: AWS refused the call because it sets a session tag that the
	// signing session passes on as transitive with another value (for example the
	// kubernetes-namespace tag of an EKS Pod Identity session).
	ReasonTransitiveTagConflict = "TransitiveTagConflict"
	// ReasonAssumedRoleConflict: a ClusterAssumedRole cannot create its AssumedRole in a namespace
	// because one of that name exists there and belongs to someone else; it is left untouched.
	ReasonAssumedRoleConflict = "AssumedRoleConflict"
	// ReasonAllNamespacesReady: every namespace a ClusterAssumedRole selects has a Ready AssumedRole.
	ReasonAllNamespacesReady = "AllNamespacesReady"
	// ReasonNamespacesFailing: some selected namespaces' AssumedRoles are failing.
	ReasonNamespacesFailing = "NamespacesFailing"
	// ReasonNamespacesPending: some selected namespaces' AssumedRoles are not Ready yet, none failing.
	ReasonNamespacesPending = "NamespacesPending"
	// ReasonInvalidSelector: a ClusterAssumedRole's namespaceSelector cannot be parsed.
	ReasonInvalidSelector = "InvalidSelector"
	// ReasonRolloutRestarted: rollout restart targets were patched after a rotation.
	ReasonRolloutRestarted = "RolloutRestarted"

	// Reasons of the Issuing condition: why credentials are due, first match wins.

	// ReasonSecretMissing: the Secret does not exist.
	ReasonSecretMissing = "SecretMissing"
	// ReasonKeysMissing: the Secret lacks one of the credential keys, or the annotation of their
	// issue time. (Derived keys that were edited are repaired without a new issuance.)
	ReasonKeysMissing = "KeysMissing"
	// ReasonRequestChanged: the spec asks for a different request than the one issued.
	ReasonRequestChanged = "RequestChanged"
	// ReasonRotationRequested: the rolekeeper.io/rotate annotation changed.
	ReasonRotationRequested = "RotationRequested"
	// ReasonRenewalDue: the renewal time has come.
	ReasonRenewalDue = "RenewalDue"
	// ReasonUpToDate: nothing is due (Issuing=False).
	ReasonUpToDate = "UpToDate"
)

// Labels and annotations the operator sets or reads.
const (
	// LabelAssumedRole is set on every Secret the operator owns, to the AssumedRole's name. Only
	// Secrets with this label are cached by the operator.
	LabelAssumedRole = "rolekeeper.io/assumed-role"
	// AnnotationExpiration on the Secret: when the credentials expire (RFC 3339).
	AnnotationExpiration = "rolekeeper.io/expiration"
	// AnnotationIssuedAt on the Secret: when the credentials were issued (RFC 3339).
	AnnotationIssuedAt = "rolekeeper.io/issued-at"
	// AnnotationRequestHash on the Secret: sha256 of the normalized STS request (no secrets).
	AnnotationRequestHash = "rolekeeper.io/request-hash"
	// AnnotationRenewalSlot on the Secret: which of the renewal times the credentials' lifetime
	// allows was chosen for them (0-7; absent means 0), so renewals issued together fall in
	// different seconds and every reconcile computes the same time from the Secret.
	AnnotationRenewalSlot = "rolekeeper.io/renewal-slot"
	// AnnotationDataDigest on the Secret: a digest of the data the operator wrote (no secret can
	// be recovered from it). The operator's cache keeps digests instead of credentials, and tells
	// an edited Secret by it.
	AnnotationDataDigest = "rolekeeper.io/data-digest"
	// AnnotationRenderHash on the Secret: a hash of what, besides the credentials, shaped its data
	// (profile, region, credentialProcess, template, type), so a spec change that asks for other
	// files is seen without reading the credentials.
	AnnotationRenderHash = "rolekeeper.io/render-hash"
	// LabelClusterAssumedRole is set on each AssumedRole a ClusterAssumedRole owns, to its name.
	LabelClusterAssumedRole = "rolekeeper.io/cluster-assumed-role"
	// AnnotationRotate on the AssumedRole: changing its value asks for one re-issuance.
	AnnotationRotate = "rolekeeper.io/rotate"
	// AnnotationRestartedAt on a workload's pod template: set after a rotation to roll its pods.
	AnnotationRestartedAt = "rolekeeper.io/restartedAt"
)
