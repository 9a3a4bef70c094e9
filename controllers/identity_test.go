package controllers_test

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// The operator's own identity as IRSA and EKS Pod Identity give it: role sessions, with
// temporary keys and a session token.
var (
	irsaIdentity = ststest.Principal{
		AccessKeyID: "ASIAOPERATORIRSA0001", SecretAccessKey: "irsa-secret-00000000000000000000000000001", SessionToken: "irsa-session-token",
		Arn: "arn:aws:sts::000000000000:assumed-role/rolekeeper/irsa-1700000000",
	}
	podIdentity = ststest.Principal{
		AccessKeyID: "ASIAOPERATORPODID001", SecretAccessKey: "pod-identity-secret-000000000000000000001", SessionToken: "pod-identity-session-token",
		Arn:            "arn:aws:sts::000000000000:assumed-role/rolekeeper/eks-prod-rolekeeper-7d9f8-abcde",
		TransitiveTags: ststest.PodIdentityTags("arn:aws:eks:us-east-1:000000000000:cluster/prod", "rolekeeper-system", "rolekeeper", "rolekeeper-7d9f8-abcde", "0f3c1a2b-4d5e-4f60-8a9b-0c1d2e3f4a5b"),
		PackedPercent:  75,
	}
	// podIdentityUntagged is a Pod Identity session of an association with disableSessionTags.
	podIdentityUntagged = ststest.Principal{
		AccessKeyID: "ASIAOPERATORPODID002", SecretAccessKey: "pod-identity-secret-000000000000000000002", SessionToken: "pod-identity-session-token-2",
		Arn: "arn:aws:sts::000000000000:assumed-role/rolekeeper/eks-prod-rolekeeper-7d9f8-fghij",
	}
)

// asIdentity is a harness whose operator signs as p.
func asIdentity(t *testing.T, p ststest.Principal, emu ststest.Options) *harness {
	emu.Principals = append(emu.Principals, p)
	h := newHarness(t, emu)
	h.identity = p
	return h
}

// longSession is a twelve-hour AssumedRole, as README's ECR example asks for where AWS allows it.
func longSession(ar *rkv1.AssumedRole) { ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](43200) }

// The operator runs as each kind of identity a real cluster gives it, and refuses before calling
// AWS what AWS would refuse of that identity.
func TestOperatorIdentityKinds(t *testing.T) {
	t.Run("IAM user: twelve-hour sessions are issued", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, ststest.Options{})
		h.start()
		h.assumedRole("long", longSession)
		h.waitCondition("long", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
		if n := h.sts.CallCount("GetCallerIdentity"); n != 1 {
			t.Errorf("%d GetCallerIdentity calls, want 1", n)
		}
	})

	t.Run("IRSA role session: sessions over an hour refused before any call", func(t *testing.T) {
		t.Parallel()
		h := asIdentity(t, irsaIdentity, ststest.Options{})
		h.start()
		h.assumedRole("long", longSession)
		h.assumedRole("pull", imagePull) // README's ECR example: 43200 s
		h.assumedRole("hour", nil)
		for _, name := range []string{"long", "pull"} {
			ar := h.waitCondition(name, rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonRoleChainingLimit, 30*time.Second)
			msg := condition(ar, rkv1.ConditionReady).Message
			for _, want := range []string{"durationSeconds is 43200", irsaIdentity.Arn, "role session", "3600"} {
				if !strings.Contains(msg, want) {
					t.Errorf("%s: Ready message %q does not say %q", name, msg, want)
				}
			}
		}
		h.waitCondition("hour", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
		for _, c := range h.sts.Calls() {
			if c.Action == "AssumeRole" && (strings.HasSuffix(c.RoleArn, "/long") || strings.HasSuffix(c.RoleArn, "/pull")) {
				t.Errorf("a call was made for a session AWS caps: %+v", c)
			}
			if c.Action == "AssumeRole" && c.Caller != irsaIdentity.Arn {
				t.Errorf("signed by %s, want the IRSA session", c.Caller)
			}
		}
		if n := h.sts.CallCount("GetCallerIdentity"); n != 1 {
			t.Errorf("%d GetCallerIdentity calls, want 1: the identity is learnt once", n)
		}
	})

	t.Run("EKS Pod Identity with session tags: the inherited kubernetes-namespace tag conflicts", func(t *testing.T) {
		t.Parallel()
		h := asIdentity(t, podIdentity, ststest.Options{})
		h.start()
		h.assumedRole("app", nil)
		ar := h.waitCondition("app", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonTransitiveTagConflict, 30*time.Second)
		msg := condition(ar, rkv1.ConditionStalled).Message
		for _, want := range []string{"kubernetes-namespace", "disableSessionTags", "--session-tags=false"} {
			if !strings.Contains(msg, want) {
				t.Errorf("Stalled message %q does not say %q", msg, want)
			}
		}
		if n := h.sts.CallCount("AssumeRole"); n != 1 {
			t.Errorf("%d AssumeRole calls, want 1 (then the slow retry)", n)
		}
	})

	t.Run("EKS Pod Identity without the operator's tags: the packed limit names the tag budget", func(t *testing.T) {
		t.Parallel()
		h := asIdentity(t, podIdentity, ststest.Options{})
		h.opts.SessionTags = false
		h.start()
		h.assumedRole("small", nil)
		h.waitCondition("small", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
		// A third of the packed limit on its own; with the six inherited tags, over it.
		h.assumedRole("big", func(ar *rkv1.AssumedRole) {
			ar.Spec.AssumeRole.Policy = `{"Version":"2012-10-17","Statement":[{"Sid":"` + strings.Repeat("S", 1900) + `","Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`
		})
		ar := h.waitCondition("big", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonIssueFailed, 30*time.Second)
		if ar.Status.LastFailure == nil || ar.Status.LastFailure.Code != "PackedPolicyTooLarge" {
			t.Fatalf("lastFailure %+v", ar.Status.LastFailure)
		}
		for _, want := range []string{"session tags", "transitive tags the signing session passes on", "EKS Pod Identity session brings six", "disableSessionTags"} {
			if !strings.Contains(ar.Status.LastFailure.Message, want) {
				t.Errorf("failure message %q does not say %q", ar.Status.LastFailure.Message, want)
			}
		}
		// Every hop needs sts:TagSession, even a call that sets no tag: the inherited ones pass on.
		h.sts.SetRole("arn:aws:iam::111122223333:role/no-tags", ststest.RoleRule{DenyTagSession: true})
		h.assumedRole("no-tags", nil)
		ar = h.waitCondition("no-tags", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonIssueFailed, 30*time.Second)
		if f := ar.Status.LastFailure; f == nil || f.Code != "AccessDenied" || !strings.Contains(f.Message, "sts:TagSession") {
			t.Errorf("lastFailure %+v, want AccessDenied naming sts:TagSession", f)
		}
	})

	t.Run("EKS Pod Identity with disableSessionTags: issued, and capped at an hour", func(t *testing.T) {
		t.Parallel()
		h := asIdentity(t, podIdentityUntagged, ststest.Options{})
		h.start()
		h.assumedRole("hour", nil)
		h.assumedRole("long", longSession)
		h.waitCondition("hour", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
		h.waitCondition("long", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonRoleChainingLimit, 30*time.Second)
		var tags []string
		for _, c := range h.sts.Calls() {
			if c.Action == "AssumeRole" {
				for _, tag := range c.Tags {
					tags = append(tags, tag.Key+"="+tag.Value)
				}
			}
		}
		if got := strings.Join(tags, ","); got != "kubernetes-namespace="+h.ns+",kubernetes-name=hour" {
			t.Errorf("tags sent %s", got)
		}
	})
}
