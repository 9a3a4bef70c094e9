package controllers

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/access"
	"github.com/rolekeeper/rolekeeper/pkg/renewal"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
)

// Session tags the operator adds so that IAM trust policies can pin a role to a namespace.
const (
	TagNamespace = "kubernetes-namespace"
	TagName      = "kubernetes-name"
	TagCluster   = "kubernetes-cluster"
)

// request is the STS call an AssumedRole asks for, resolved against the operator's options.
type request struct {
	role *sts.AssumeRoleRequest
	root *sts.AssumeRootRequest
	// ecr is set for an image-pull Secret: the ECR login the session is used for.
	ecr    *sts.ECRRequest
	region string
	// hash identifies the request (and its source) in the Secret's request-hash annotation.
	hash string
	// sentTags is true when session tags go to AWS (for the sts:TagSession hint on AccessDenied).
	sentTags bool
}

// buildRequest turns the spec into an STS request. It fails for what admission cannot check,
// because it depends on the operator's flags: no region at all, a limit the operator's own tags
// break, transitive keys naming a tag the operator does not send.
func buildRequest(ar *rkv1.AssumedRole, opts Options) (*request, error) {
	spec := &ar.Spec
	region := spec.Region
	if region == "" {
		region = opts.Region
	}
	r := &request{region: region}
	switch {
	case spec.AssumeRole != nil:
		in := spec.AssumeRole
		req := sts.AssumeRoleRequest{
			Region:            region,
			RoleArn:           in.RoleArn,
			SessionName:       sessionName(ar),
			DurationSeconds:   roleDuration(in),
			ExternalID:        in.ExternalID,
			SourceIdentity:    in.SourceIdentity,
			Policy:            in.Policy,
			PolicyArns:        in.PolicyArns,
			TransitiveTagKeys: in.TransitiveTagKeys,
			Chained:           spec.Source != nil,
		}
		for _, t := range in.Tags {
			req.Tags = append(req.Tags, sts.Tag{Key: t.Key, Value: t.Value})
		}
		if opts.SessionTags {
			req.Tags = append(req.Tags, sts.Tag{Key: TagNamespace, Value: ar.Namespace}, sts.Tag{Key: TagName, Value: ar.Name})
			if opts.ClusterName != "" {
				req.Tags = append(req.Tags, sts.Tag{Key: TagCluster, Value: opts.ClusterName})
			}
		}
		r.sentTags = len(req.Tags) > 0
		if err := operatorTagsSent(in.TransitiveTagKeys, opts); err != nil {
			return r, err
		}
		if region == "" {
			return r, fmt.Errorf("no AWS region: set spec.region or start the operator with --region")
		}
		if err := req.Validate(); err != nil {
			return r, err
		}
		r.role = &req
		r.hash = req.Hash()
	case spec.AssumeRoot != nil:
		in := spec.AssumeRoot
		req := sts.AssumeRootRequest{
			Region:          region,
			TargetPrincipal: in.TargetPrincipal,
			TaskPolicyArn:   sts.TaskPolicyArn(region, string(in.TaskPolicy)),
			DurationSeconds: rootDuration(in),
		}
		if err := req.Validate(); err != nil {
			return r, err
		}
		r.root = &req
		r.hash = req.Hash()
	default:
		return r, fmt.Errorf("set exactly one of spec.assumeRole or spec.assumeRoot")
	}
	if spec.Source != nil {
		r.hash = extendHash(r.hash, "source="+spec.Source.AssumedRoleRef.Name)
	}
	if e := spec.Secret.ECR; e != nil && r.role != nil {
		ecr := sts.ECRRequest{Region: e.Region, RegistryIDs: slices.Sorted(slices.Values(e.RegistryIDs))}
		if ecr.Region == "" {
			ecr.Region = region
		}
		if err := ecr.Validate(); err != nil {
			return r, err
		}
		r.ecr = &ecr
		// Only image-pull Secrets extend the hash, so Secrets of other AssumedRoles keep theirs.
		r.hash = extendHash(r.hash, "ecr="+ecr.Region+"/"+strings.Join(ecr.RegistryIDs, ","))
	}
	return r, nil
}

// operatorTagsSent refuses transitiveTagKeys that name one of the operator's own tags when the
// operator's flags mean it does not send that tag: admission cannot know the flags.
func operatorTagsSent(transitive []string, opts Options) error {
	for _, k := range transitive {
		switch lk := strings.ToLower(k); {
		case (lk == TagNamespace || lk == TagName || lk == TagCluster) && !opts.SessionTags:
			return fmt.Errorf("transitiveTagKeys names %s, but the operator runs with --session-tags=false and sends no tags of its own: remove %s from transitiveTagKeys", k, k)
		case lk == TagCluster && opts.ClusterName == "":
			return fmt.Errorf("transitiveTagKeys names %s, but the operator runs without --cluster-name and so sends no %s tag: remove it from transitiveTagKeys, or have the administrator set --cluster-name", k, TagCluster)
		}
	}
	return nil
}

func extendHash(hash, part string) string {
	sum := sha256.Sum256([]byte(hash + "\x00" + part))
	return hex.EncodeToString(sum[:])
}

// secretType is the type of the Secret the spec asks for.
func secretType(ar *rkv1.AssumedRole) corev1.SecretType {
	if ar.Spec.Secret.ECR != nil {
		return corev1.SecretTypeDockerConfigJson
	}
	return corev1.SecretTypeOpaque
}

// AccessRequest is what an AssumedRole asks for as AssumedRolePolicies see it, read from the
// spec alone: the access check runs before anything else is done with the spec. kubectl
// rolekeeper explain asks the same question.
func AccessRequest(ar *rkv1.AssumedRole) access.Request {
	if in := ar.Spec.AssumeRole; in != nil {
		return access.Request{RoleArn: in.RoleArn, DurationSeconds: roleDuration(in), SessionName: sessionName(ar), SourceIdentity: in.SourceIdentity}
	}
	if in := ar.Spec.AssumeRoot; in != nil {
		return access.Request{TargetPrincipal: in.TargetPrincipal, TaskPolicy: in.TaskPolicy, DurationSeconds: rootDuration(in)}
	}
	return access.Request{}
}

// roleDuration is the session duration an AssumeRole asks for.
func roleDuration(in *rkv1.AssumeRoleSpec) int32 {
	if in.DurationSeconds != nil {
		return *in.DurationSeconds
	}
	return sts.DefaultDurationSeconds
}

func rootDuration(in *rkv1.AssumeRootSpec) int32 {
	if in.DurationSeconds != nil {
		return *in.DurationSeconds
	}
	return sts.MaxRootDurationSeconds
}

// sessionName is the role session name an AssumeRole sends: the spec's, or "<namespace>.<name>".
func sessionName(ar *rkv1.AssumedRole) string {
	if n := ar.Spec.AssumeRole.SessionName; n != "" {
		return n
	}
	return sts.DefaultSessionName(ar.Namespace, ar.Name)
}

// RenewalPolicy is the spec's renewal setting for pkg/renewal.
func RenewalPolicy(ar *rkv1.AssumedRole) renewal.Policy {
	var p renewal.Policy
	if rn := ar.Spec.Renewal; rn != nil {
		if rn.RenewBefore != nil {
			p.RenewBefore = rn.RenewBefore.Duration
		}
		if rn.RenewBeforePercentage != nil {
			p.RenewBeforePercentage = *rn.RenewBeforePercentage
		}
	}
	return p
}

// renderInput is what the Secret should hold for these credentials under the current spec.
func renderInput(ar *rkv1.AssumedRole, region string, c secretdata.Input) secretdata.Input {
	c.Region = region
	c.Profile = ar.Spec.Secret.Profile
	c.CredentialProcessMountPath = ""
	if cp := ar.Spec.Secret.CredentialProcess; cp != nil {
		c.CredentialProcessMountPath = cp.MountPath
	}
	return c
}

// renderHash identifies what shapes a Secret's data besides the credentials: a change of it asks
// for other files from the same credentials, which is a repair, not an issuance.
func renderHash(ar *rkv1.AssumedRole, region string) string {
	in := renderInput(ar, region, secretdata.Input{})
	var tmpl map[string]string
	if t := ar.Spec.Secret.Template; t != nil {
		tmpl = t.Data
	}
	b, _ := json.Marshal(struct { // strings and a map of strings always marshal
		Type                       corev1.SecretType
		Region, Profile, MountPath string
		Template                   map[string]string
	}{secretType(ar), in.Region, in.Profile, in.CredentialProcessMountPath, tmpl})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

func secretName(ar *rkv1.AssumedRole) string {
	if ar.Spec.Secret.Name != "" {
		return ar.Spec.Secret.Name
	}
	return ar.Name
}
