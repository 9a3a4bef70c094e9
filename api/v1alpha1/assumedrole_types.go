package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AssumedRole asks rolekeeper to call AWS STS AssumeRole (or AssumeRoot) with the operator's AWS
// identity, write the temporary credentials into a Secret in the same namespace, and re-issue them
// before they expire.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Namespaced,shortName=ar,categories=rolekeeper;aws
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=`.spec.assumeRole.roleArn`
// +kubebuilder:printcolumn:name="Root Target",type=string,JSONPath=`.spec.assumeRoot.targetPrincipal`,priority=1
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.status.secretName`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiration`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="!has(self.spec.source) || self.spec.source.assumedRoleRef.name != self.metadata.name",message="spec.source.assumedRoleRef.name must name another AssumedRole: an AssumedRole cannot chain from itself"
type AssumedRole struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which role to assume and where to write the credentials.
	// +required
	Spec AssumedRoleSpec `json:"spec"`

	// status reports the credentials currently in the Secret and the outcome of the last issuance.
	// +optional
	Status AssumedRoleStatus `json:"status,omitempty"`
}

// AssumedRoleSpec is the desired state of an AssumedRole. Exactly one of assumeRole and assumeRoot
// is set.
//
// +kubebuilder:validation:XValidation:rule="has(self.assumeRole) != has(self.assumeRoot)",message="set exactly one of spec.assumeRole (sts:AssumeRole) or spec.assumeRoot (sts:AssumeRoot)"
// +kubebuilder:validation:XValidation:rule="!has(self.source) || !has(self.assumeRole) || !has(self.assumeRole.durationSeconds) || self.assumeRole.durationSeconds <= 3600",message="spec.assumeRole.durationSeconds must be at most 3600 when spec.source.assumedRoleRef is set: AWS limits role-chaining sessions to one hour"
// +kubebuilder:validation:XValidation:rule="!has(self.assumeRoot) || !has(self.secret) || !has(self.secret.ecr)",message="secret.ecr needs spec.assumeRole: no AssumeRoot task policy allows ecr:GetAuthorizationToken"
// +kubebuilder:validation:XValidation:rule="!has(self.renewal) || !has(self.renewal.renewBefore) || ((!has(self.assumeRole) || !has(self.assumeRole.durationSeconds) || duration(self.renewal.renewBefore).getSeconds() < self.assumeRole.durationSeconds) && (!has(self.assumeRoot) || !has(self.assumeRoot.durationSeconds) || duration(self.renewal.renewBefore).getSeconds() < self.assumeRoot.durationSeconds))",message="renewal.renewBefore must be shorter than durationSeconds: credentials are renewed renewBefore ahead of expiry, so it must fit in the session; shorten renewBefore or ask for a longer session"
type AssumedRoleSpec struct {
	// assumeRole calls sts:AssumeRole. Mutually exclusive with assumeRoot.
	// +optional
	AssumeRole *AssumeRoleSpec `json:"assumeRole,omitempty"`

	// assumeRoot calls sts:AssumeRoot for a member account of an AWS Organization. It must be
	// allowed explicitly by an AssumedRolePolicy (allowedRootTargets and allowedTaskPolicies).
	// Mutually exclusive with assumeRole.
	// +optional
	AssumeRoot *AssumeRootSpec `json:"assumeRoot,omitempty"`

	// region is the AWS region whose regional STS endpoint is called and which is written to the
	// Secret as AWS_REGION, for example "eu-west-1". Default: the operator's --region flag.
	// AssumeRoot always needs a region. The STS endpoint itself is never set per resource; see the
	// operator's --sts-endpoint flag.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^((us|eu|ap|sa|ca|me|af|il|mx|cn)-[a-z0-9]+|(us-gov|us-iso|us-isob|us-isof|eu-isoe|eusc-de)-[a-z0-9]+)-[0-9]+$')",message="region must be an AWS region code of a known partition, such as us-east-1, cn-north-1, us-gov-west-1 or eusc-de-east-1"
	Region string `json:"region,omitempty"`

	// source is the identity that calls STS. Default: the operator's own AWS identity.
	// +optional
	Source *CredentialSource `json:"source,omitempty"`

	// secret shapes the Secret the credentials are written to.
	// +optional
	Secret SecretSpec `json:"secret,omitempty"`

	// renewal says when credentials are re-issued. Default: at two thirds of the lifetime STS
	// actually granted, less a small per-object jitter.
	// +optional
	Renewal *RenewalSpec `json:"renewal,omitempty"`

	// rolloutRestartTargets are workloads in the same namespace whose pods are restarted (by
	// patching their pod template annotation rolekeeper.io/restartedAt) after each rotation, for
	// consumers that read credentials only at start-up. Not restarted on the first issuance. Only
	// a workload whose pod template uses the Secret (a volume, a projected volume, envFrom or an
	// env secretKeyRef) is restarted; others are reported in status.rolloutRestart.skipped.
	// At most 16 targets; each kind/name pair at most once.
	// +optional
	// +listType=map
	// +listMapKey=kind
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	RolloutRestartTargets []RolloutRestartTarget `json:"rolloutRestartTargets,omitempty"`
}

// AssumeRoleSpec holds the parameters of sts:AssumeRole. Every bound is the one AWS documents.
//
// +kubebuilder:validation:XValidation:rule="(has(self.policy) ? size(self.policy) : 0) + (has(self.policyArns) ? self.policyArns.map(a, size(a)).sum() : 0) <= 2048",message="policy and policyArns together must be at most 2048 characters: shorten the inline policy or use fewer managed policies"
// +kubebuilder:validation:XValidation:rule="!has(self.transitiveTagKeys) || self.transitiveTagKeys.all(k, k.lowerAscii() in ['kubernetes-namespace', 'kubernetes-name', 'kubernetes-cluster'] || (has(self.tags) && self.tags.exists(t, t.key.lowerAscii() == k.lowerAscii())))",message="every transitiveTagKeys entry must name a key in tags (or one of the operator's kubernetes-namespace, kubernetes-name, kubernetes-cluster tags)"
// +kubebuilder:validation:XValidation:rule="!has(self.serialNumber) && !has(self.tokenCode)",message="serialNumber and tokenCode (MFA) are deliberately not offered: an MFA code cannot be produced unattended without storing the MFA secret next to the credentials it protects; remove them, and pin the role to the operator's identity and session tags in its trust policy instead",fieldPath=".serialNumber",reason=FieldValueForbidden
// +kubebuilder:validation:XValidation:rule="!has(self.providedContexts)",message="providedContexts is deliberately not offered: a context assertion comes from a person's IAM Identity Center session (trusted identity propagation), not from a controller; remove it",fieldPath=".providedContexts",reason=FieldValueForbidden
type AssumeRoleSpec struct {
	// roleArn is the ARN of the IAM role to assume, for example
	// arn:aws:iam::111122223333:role/reader, with the role's path if it has one
	// (arn:aws:iam::111122223333:role/team/reader). Required; 20-2048 characters.
	// +required
	// +kubebuilder:validation:MinLength=20
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^arn:aws[a-z-]*:iam::[0-9]{12}:role/([!-~]*/)?[A-Za-z0-9_+=,.@-]+$')",message="roleArn must be an IAM role ARN such as arn:aws:iam::111122223333:role/reader or arn:aws:iam::111122223333:role/path/to/reader (a path may use any printable ASCII character; a role name only letters, digits and _+=,.@-)"
	RoleArn string `json:"roleArn"`

	// sessionName is the role session name, visible in CloudTrail and in the assumed-role ARN.
	// Default: "<namespace>.<name>", with characters outside [A-Za-z0-9_+=,.@-] replaced and a hash
	// suffix when longer than 64. 2-64 characters of [A-Za-z0-9_+=,.@-].
	// +optional
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9_+=,.@-]+$')",message="sessionName may contain only letters, digits and _+=,.@-"
	SessionName string `json:"sessionName,omitempty"`

	// durationSeconds is the requested session lifetime: 900-43200 seconds, at most 3600 when
	// source.assumedRoleRef is set (role chaining), and never more than the role's maximum session
	// duration. Default: 3600.
	// +optional
	// +kubebuilder:validation:Minimum=900
	// +kubebuilder:validation:Maximum=43200
	DurationSeconds *int32 `json:"durationSeconds,omitempty"`

	// externalId is the external ID the role's trust policy requires. 2-1224 characters of
	// [A-Za-z0-9_+=,.@:/-].
	// +optional
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=1224
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9_+=,.@:/-]+$')",message="externalId may contain only letters, digits and _+=,.@:/-"
	ExternalID string `json:"externalId,omitempty"`

	// sourceIdentity is set on the session and carried through role chains and CloudTrail.
	// 2-64 characters of [A-Za-z0-9_+=,.@-]; must not start with "aws:".
	// +optional
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="!self.lowerAscii().startsWith('aws:')",message="sourceIdentity must not start with aws: (reserved by AWS)"
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9_+=,.@-]+$')",message="sourceIdentity may contain only letters, digits and _+=,.@-"
	SourceIdentity string `json:"sourceIdentity,omitempty"`

	// policy is an inline session policy (IAM policy JSON). The session gets the intersection of
	// the role's permissions and this policy. policy and policyArns together: at most 2048
	// characters. Only tab, line feed, carriage return and U+0020-U+00FF, as STS allows.
	// +optional
	// +kubebuilder:validation:MinLength=2
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches(r'^\\s*[{][\\s\\S]*[}]\\s*$')",message="policy must be an IAM policy JSON document (an object such as {\"Version\":\"2012-10-17\",\"Statement\":[...]})"
	// +kubebuilder:validation:XValidation:rule="self.matches(r'^[\\t\\n\\r\\x{20}-\\x{FF}]*$')",message="policy may contain only tab, line feed, carriage return and the characters U+0020 to U+00FF, as STS requires: write other characters as JSON escapes (\\u20AC for €)"
	Policy string `json:"policy,omitempty"`

	// policyArns are managed policies used as session policies. At most 10 IAM policy ARNs, each
	// 20-2048 characters.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:MinLength=20
	// +kubebuilder:validation:items:MaxLength=2048
	// +kubebuilder:validation:items:XValidation:rule="self.matches('^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/([!-~]*/)?[A-Za-z0-9_+=,.@-]+$')",message="each policyArns entry must be an IAM policy ARN such as arn:aws:iam::aws:policy/ReadOnlyAccess or arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"
	PolicyArns []string `json:"policyArns,omitempty"`

	// tags are session tags. At most 47 (AWS's 50 less the operator's own three); keys unique ignoring the case of ASCII letters, 1-128 characters, values at
	// most 256 characters, both of Unicode letters, digits, spaces and _.:/=+-@. Keys starting with
	// "aws:", "kubernetes-" or "rolekeeper.io/" are reserved: the operator adds kubernetes-namespace,
	// kubernetes-name and kubernetes-cluster itself.
	// +optional
	// +listType=map
	// +listMapKey=key
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:XValidation:rule="self.all(t, self.exists_one(u, u.key.lowerAscii() == t.key.lowerAscii()))",message="tag keys must be unique ignoring case: AWS treats Team and team as the same key"
	// +kubebuilder:validation:XValidation:rule="size(self) <= 47",message="at most 47 tags: AWS allows 50 per session and the operator adds up to three of its own (kubernetes-namespace, kubernetes-name, kubernetes-cluster)"
	Tags []SessionTag `json:"tags,omitempty"`

	// transitiveTagKeys are tag keys that persist into chained sessions. At most 50; each must
	// name a key in tags (ASCII letters compared ignoring case) or one of the operator's
	// kubernetes-* tags.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=128
	TransitiveTagKeys []string `json:"transitiveTagKeys,omitempty"`

	// serialNumber is refused: sts:AssumeRole's MFA device serial number is deliberately not
	// offered. The MFA code that must go with it (tokenCode) cannot be produced unattended
	// without storing the MFA secret next to the credentials it protects. The field exists only
	// so that the API server refuses it with that reason instead of dropping it silently.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	SerialNumber string `json:"serialNumber,omitempty"`

	// tokenCode is refused, for the reason given at serialNumber.
	// +optional
	// +kubebuilder:validation:MaxLength=6
	TokenCode string `json:"tokenCode,omitempty"`

	// providedContexts is refused: sts:AssumeRole's context assertions are deliberately not
	// offered. A context assertion comes from a person's IAM Identity Center session (trusted
	// identity propagation), not from a controller. The field exists only so that the API server
	// refuses it with that reason instead of dropping it silently.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=5
	ProvidedContexts []ProvidedContext `json:"providedContexts,omitempty"`
}

// ProvidedContext is the shape of an sts:AssumeRole context assertion; AssumeRoleSpec refuses
// every one (see providedContexts).
type ProvidedContext struct {
	// providerArn is the context provider's ARN. At most 2048 characters.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	ProviderArn string `json:"providerArn,omitempty"`
	// contextAssertion is the signed assertion. At most 2048 characters.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	ContextAssertion string `json:"contextAssertion,omitempty"`
}

// SessionTag is one STS session tag.
type SessionTag struct {
	// key is the tag key: 1-128 characters of Unicode letters, digits, spaces and _.:/=+-@; not
	// starting with aws:, kubernetes- or rolekeeper.io/ (any case).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:rule="self.matches(r'^[\\p{L}\\p{Z}\\p{N}_.:/=+@-]+$')",message="tag key may contain only Unicode letters, digits, spaces and _.:/=+-@"
	// +kubebuilder:validation:XValidation:rule="!self.lowerAscii().startsWith('aws:') && !self.lowerAscii().startsWith('kubernetes-') && !self.lowerAscii().startsWith('rolekeeper.io/')",message="tag keys starting with aws:, kubernetes- or rolekeeper.io/ are reserved; the operator sets kubernetes-namespace, kubernetes-name and kubernetes-cluster itself"
	Key string `json:"key"`

	// value is the tag value: at most 256 characters of Unicode letters, digits, spaces and
	// _.:/=+-@; may be empty.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:XValidation:rule="self.matches(r'^[\\p{L}\\p{Z}\\p{N}_.:/=+@-]*$')",message="tag value may contain only Unicode letters, digits, spaces and _.:/=+-@"
	Value string `json:"value"`
}

// RootTaskPolicy names an AWS managed task policy that scopes an AssumeRoot session.
// +kubebuilder:validation:Enum=IAMAuditRootUserCredentials;IAMCreateRootUserPassword;IAMDeleteRootUserCredentials;S3UnlockBucketPolicy;SQSUnlockQueuePolicy
type RootTaskPolicy string

// The task policies AWS offers for AssumeRoot (arn:<partition>:iam::aws:policy/root-task/<name>).
const (
	TaskPolicyIAMAuditRootUserCredentials  RootTaskPolicy = "IAMAuditRootUserCredentials"
	TaskPolicyIAMCreateRootUserPassword    RootTaskPolicy = "IAMCreateRootUserPassword"
	TaskPolicyIAMDeleteRootUserCredentials RootTaskPolicy = "IAMDeleteRootUserCredentials"
	TaskPolicyS3UnlockBucketPolicy         RootTaskPolicy = "S3UnlockBucketPolicy"
	TaskPolicySQSUnlockQueuePolicy         RootTaskPolicy = "SQSUnlockQueuePolicy"
)

// AssumeRootSpec holds the parameters of sts:AssumeRoot: a short privileged session on a member
// account, limited to one task policy.
type AssumeRootSpec struct {
	// targetPrincipal is the member account: a 12-digit account ID or its principal ARN
	// (12-2048 characters).
	// +required
	// +kubebuilder:validation:MinLength=12
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]{12}|arn:aws[a-z-]*:iam::[0-9]{12}:[A-Za-z0-9_+=,.@/-]+)$')",message="targetPrincipal must be a 12-digit AWS account ID or a principal ARN such as arn:aws:iam::444455556666:root"
	TargetPrincipal string `json:"targetPrincipal"`

	// taskPolicy is the AWS managed root task policy that scopes the session (sent as
	// arn:<partition>:iam::aws:policy/root-task/<taskPolicy>).
	// +required
	TaskPolicy RootTaskPolicy `json:"taskPolicy"`

	// durationSeconds is the requested session lifetime: 1-900 seconds. Default: 900.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=900
	DurationSeconds *int32 `json:"durationSeconds,omitempty"`
}

// CredentialSource names the identity that calls STS.
type CredentialSource struct {
	// assumedRoleRef chains from another AssumedRole in the same namespace: its current
	// credentials sign this AssumedRole's STS call. AWS then limits the session to one hour.
	// +required
	AssumedRoleRef LocalAssumedRoleReference `json:"assumedRoleRef"`
}

// LocalAssumedRoleReference names an AssumedRole in the same namespace.
type LocalAssumedRoleReference struct {
	// name of the AssumedRole.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="assumedRoleRef.name must be a valid object name: lowercase letters, digits, '-' and '.'"
	Name string `json:"name"`
}

// SecretSpec shapes the Secret the credentials are written to.
//
// +kubebuilder:validation:XValidation:rule="(has(self.type) && self.type == 'kubernetes.io/dockerconfigjson') == has(self.ecr)",message="secret.ecr and secret.type kubernetes.io/dockerconfigjson go together: an image-pull Secret needs secret.ecr, and secret.ecr needs that type"
// +kubebuilder:validation:XValidation:rule="!has(self.ecr) || (!has(self.template) && !has(self.credentialProcess) && !has(self.profile))",message="an image-pull Secret holds only .dockerconfigjson: remove secret.template, secret.credentialProcess and secret.profile, or use another AssumedRole for AWS credentials"
type SecretSpec struct {
	// name of the Secret in the same namespace. Default: the AssumedRole's name. A Secret of that
	// name that this AssumedRole does not own is never modified (reason SecretConflict).
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="secret.name must be a DNS subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
	Name string `json:"name,omitempty"`

	// type of the Secret. Opaque (the default) holds the AWS credentials. kubernetes.io/dockerconfigjson
	// makes an image-pull Secret instead: the operator uses the assumed credentials to call ECR
	// GetAuthorizationToken and writes only the registry login (.dockerconfigjson); the AWS
	// credentials themselves are not stored. Needs secret.ecr. Changing the type replaces the
	// Secret, because Kubernetes does not allow a Secret's type to change.
	// +optional
	// +kubebuilder:validation:Enum=Opaque;kubernetes.io/dockerconfigjson
	Type corev1.SecretType `json:"type,omitempty"`

	// ecr says which Amazon ECR registries the image-pull Secret logs in to. Only with type
	// kubernetes.io/dockerconfigjson.
	// +optional
	ECR *ECRSpec `json:"ecr,omitempty"`

	// profile is the profile name used in the credentials and config files. Default: "default".
	// 1-64 characters of [A-Za-z0-9_.+-].
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="self.matches('^[A-Za-z0-9_.+-]+$')",message="profile may contain only letters, digits and _.+-"
	Profile string `json:"profile,omitempty"`

	// credentialProcess adds the keys `config` and `credential_process.json`, so that SDKs
	// re-read rotated credentials from a mounted Secret through credential_process.
	// +optional
	CredentialProcess *CredentialProcessSpec `json:"credentialProcess,omitempty"`

	// template adds data keys rendered with Go text/template from the issued credentials, or
	// replaces the derived keys (credentials, config, credential_process.json). The credential keys
	// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and AWS_CREDENTIAL_EXPIRATION
	// cannot be replaced. A template that fails sets Ready=False with reason TemplateInvalid and
	// leaves the Secret as it was.
	// +optional
	Template *SecretTemplate `json:"template,omitempty"`

	// labels are copied to the Secret (never the AssumedRole's own labels). At most 32; keys
	// starting with rolekeeper.io/ are reserved.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('rolekeeper.io/'))",message="secret.labels must not use the reserved rolekeeper.io/ prefix"
	Labels map[string]string `json:"labels,omitempty"`

	// annotations are copied to the Secret. At most 32; keys starting with rolekeeper.io/ are
	// reserved.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, !k.startsWith('rolekeeper.io/'))",message="secret.annotations must not use the reserved rolekeeper.io/ prefix"
	Annotations map[string]string `json:"annotations,omitempty"`
}

// SecretTemplate renders extra Secret keys. Templates read .AccessKeyID, .SecretAccessKey,
// .SessionToken, .Expiration, .Region, .RoleArn and .Profile, and may call base64, base64url,
// upper, lower, trim, quote (JSON string), rfc3339 and unix besides text/template's comparisons
// and logic. range, define/template and printf are not available; each key renders at most
// 64 KiB. Templates cannot read other Secrets, files or the environment.
type SecretTemplate struct {
	// data maps a Secret key to its template. At most 16 keys of [-._a-zA-Z0-9], each template at
	// most 4096 characters.
	// +required
	// +kubebuilder:validation:MinProperties=1
	// +kubebuilder:validation:MaxProperties=16
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 253 && k.matches('^[-._a-zA-Z0-9]+$'))",message="secret.template.data keys must be valid Secret keys: letters, digits, '-', '_' and '.'"
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', 'AWS_CREDENTIAL_EXPIRATION']))",message="secret.template.data cannot replace AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN or AWS_CREDENTIAL_EXPIRATION"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(self[k]) <= 4096)",message="each secret.template.data template must be at most 4096 characters"
	Data map[string]string `json:"data"`
}

// ECRSpec names the Amazon ECR registries of an image-pull Secret. The login token ECR issues
// is valid for 12 hours and never longer than the session that requested it, so the Secret is
// renewed ahead of whichever ends first; a session of 43200 seconds (assumeRole.durationSeconds)
// gets the most out of each token.
type ECRSpec struct {
	// registryIds are the AWS account IDs whose private registries the Secret logs in to, one
	// entry each in .dockerconfigjson. At most 10. Default: the registry of the assumed role's
	// account. The token is the same for all of them; it grants what the role may pull.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=10
	// +kubebuilder:validation:items:Pattern=`^[0-9]{12}$`
	RegistryIDs []string `json:"registryIds,omitempty"`

	// region of the registries, for example "eu-west-1". Default: spec.region, then the
	// operator's --region.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^((us|eu|ap|sa|ca|me|af|il|mx|cn)-[a-z0-9]+|(us-gov|us-iso|us-isob|us-isof|eu-isoe|eusc-de)-[a-z0-9]+)-[0-9]+$')",message="ecr.region must be an AWS region code of a known partition, such as us-east-1, cn-north-1 or eusc-de-east-1"
	Region string `json:"region,omitempty"`
}

// CredentialProcessSpec says where the pod mounts the Secret.
type CredentialProcessSpec struct {
	// mountPath is the directory where pods mount the Secret; the config file runs
	// `cat <mountPath>/credential_process.json`. An absolute path of [A-Za-z0-9_./-], at most 512
	// characters.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.matches('^/[A-Za-z0-9_./-]*$')",message="mountPath must be an absolute path of letters, digits and _./- (no spaces or shell characters)"
	MountPath string `json:"mountPath"`
}

// RenewalSpec says when credentials are re-issued. renewBefore and renewBeforePercentage are
// mutually exclusive. Whatever is set, renewal happens at least 60 seconds before expiry.
//
// +kubebuilder:validation:XValidation:rule="!(has(self.renewBefore) && has(self.renewBeforePercentage))",message="set at most one of renewal.renewBefore and renewal.renewBeforePercentage"
type RenewalSpec struct {
	// renewBefore renews this long before expiry, for example "20m". 1m to 12h, and shorter than
	// durationSeconds when that is set. When it is not shorter than the lifetime AWS actually
	// granted, the default (two thirds of the lifetime) applies.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m') && duration(self) <= duration('12h')",message="renewal.renewBefore must be between 1m and 12h"
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`

	// renewBeforePercentage renews when this percentage of the granted lifetime remains: 1-90.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=90
	RenewBeforePercentage *int32 `json:"renewBeforePercentage,omitempty"`
}

// RolloutRestartTarget is a workload restarted after each rotation.
type RolloutRestartTarget struct {
	// kind of the workload: Deployment, StatefulSet or DaemonSet.
	// +required
	// +kubebuilder:validation:Enum=Deployment;StatefulSet;DaemonSet
	Kind string `json:"kind"`

	// name of the workload in the AssumedRole's namespace.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')",message="rolloutRestartTargets name must be a valid object name: lowercase letters, digits, '-' and '.'"
	Name string `json:"name"`
}

// AssumedRoleStatus is the observed state of an AssumedRole.
type AssumedRoleStatus struct {
	// conditions: Ready (credentials in the Secret are valid and current), Issuing (an issuance
	// is due or in progress, with the reason why) and Stalled (progress needs a change to the
	// spec, a policy, or AWS-side configuration).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// observedGeneration is the spec generation last issued successfully.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// secretName is the Secret holding the credentials.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// expiration is when the credentials in the Secret expire.
	// +optional
	Expiration *metav1.Time `json:"expiration,omitempty"`

	// renewalTime is when the credentials will be re-issued: the planned renewal, or after a
	// failure the next retry.
	// +optional
	RenewalTime *metav1.Time `json:"renewalTime,omitempty"`

	// lastIssuedTime is when the credentials in the Secret were issued.
	// +optional
	LastIssuedTime *metav1.Time `json:"lastIssuedTime,omitempty"`

	// assumedRoleUser identifies the session STS returned.
	// +optional
	AssumedRoleUser *AssumedRoleUser `json:"assumedRoleUser,omitempty"`

	// sourceIdentity is the source identity STS recorded for the session.
	// +optional
	SourceIdentity string `json:"sourceIdentity,omitempty"`

	// packedPolicySize is the percentage of the packed session policy and tag limit used, as
	// reported by STS. Close to 100 means the next added tag or policy may be refused.
	// +optional
	PackedPolicySize *int32 `json:"packedPolicySize,omitempty"`

	// failedAttempts counts consecutive failed issuances; 0 after a success.
	// +optional
	FailedAttempts int32 `json:"failedAttempts,omitempty"`

	// rotateRequest is the value of the rolekeeper.io/rotate annotation last acted on.
	// +optional
	RotateRequest string `json:"rotateRequest,omitempty"`

	// rolloutRestart is the outcome of the last rollout restart after a rotation.
	// +optional
	RolloutRestart *RolloutRestartStatus `json:"rolloutRestart,omitempty"`

	// lastFailure is the most recent failed issuance, with the AWS error code. It never holds
	// credential material.
	// +optional
	LastFailure *IssueFailure `json:"lastFailure,omitempty"`
}

// RolloutRestartStatus is what happened to rolloutRestartTargets after a rotation.
type RolloutRestartStatus struct {
	// time of the rotation the restarts were for (the value written to
	// rolekeeper.io/restartedAt).
	// +optional
	Time *metav1.Time `json:"time,omitempty"`
	// restarted lists the targets patched, as Kind/name.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Restarted []string `json:"restarted,omitempty"`
	// skipped lists targets that were not restarted because their pod template does not use the
	// Secret (no volume, projected volume, envFrom or env secretKeyRef names it), as Kind/name.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Skipped []string `json:"skipped,omitempty"`
	// notFound lists targets that do not exist, as Kind/name. The rotation itself succeeded.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	NotFound []string `json:"notFound,omitempty"`
	// failed lists targets whose patch failed, as Kind/name: message.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=16
	Failed []string `json:"failed,omitempty"`
}

// AssumedRoleUser identifies an STS session.
type AssumedRoleUser struct {
	// arn of the assumed-role session, arn:aws:sts::<account>:assumed-role/<role>/<session>.
	// +optional
	Arn string `json:"arn,omitempty"`
	// assumedRoleId is the unique id of the session, <role id>:<session name>.
	// +optional
	AssumedRoleID string `json:"assumedRoleId,omitempty"`
}

// IssueFailure describes a failed issuance.
type IssueFailure struct {
	// code is the AWS error code (for example AccessDenied or Throttling), or a rolekeeper reason
	// when the request never reached AWS.
	// +optional
	Code string `json:"code,omitempty"`
	// message says what failed and what to do; never credential material.
	// +optional
	Message string `json:"message,omitempty"`
	// time of the failure.
	// +optional
	Time *metav1.Time `json:"time,omitempty"`
	// generation is the spec generation that failed; a newer spec is tried at once, without
	// waiting out the backoff.
	// +optional
	Generation int64 `json:"generation,omitempty"`
	// retryable is true when the failure is expected to clear by itself (throttling, 5xx,
	// network) and false when something must change first (AccessDenied, invalid input).
	// +optional
	Retryable bool `json:"retryable,omitempty"`
}

// AssumedRoleList is a list of AssumedRoles.
//
// +kubebuilder:object:root=true
type AssumedRoleList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AssumedRole `json:"items"`
}
