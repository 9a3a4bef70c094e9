package controllers_test

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// Edited derived keys are repaired without AWS; removed credentials and a deleted Secret are
// re-issued; a spec change re-issues at once.
func TestSecretRepairAndRecreate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.start()
	h.assumedRole("app", func(ar *rkv1.AssumedRole) {
		ar.Spec.Secret.CredentialProcess = &rkv1.CredentialProcessSpec{MountPath: "/creds"}
	})
	h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)
	ctx := context.Background()
	first := credsOf(h.secret("app"))
	var second *sts.Credentials

	h.phase("edited derived keys are repaired without AWS", func(t *testing.T) {
		s := h.secret("app")
		wantCredentials := string(s.Data["credentials"])
		s.Data["credentials"] = []byte("[default]\naws_access_key_id = tampered\n")
		delete(s.Data, "config")
		s.Data["extra"] = []byte("stray")
		if err := k8s.Update(ctx, s); err != nil {
			t.Fatal(err)
		}
		h.eventually(20*time.Second, "the derived keys repaired", func() bool {
			s := h.secret("app")
			_, stray := s.Data["extra"]
			return string(s.Data["credentials"]) == wantCredentials && len(s.Data["config"]) > 0 && !stray
		})
		if n := h.sts.CallCount("AssumeRole"); n != 1 {
			t.Errorf("repair made %d AssumeRole calls, want none beyond the first", n-1)
		}
	})
	h.phase("a removed session token is re-issued", func(t *testing.T) {
		s := h.secret("app")
		delete(s.Data, "AWS_SESSION_TOKEN")
		if err := k8s.Update(ctx, s); err != nil {
			t.Fatal(err)
		}
		h.eventually(20*time.Second, "re-issue after a removed session token", func() bool {
			c := credsOf(h.secret("app"))
			return c != nil && c.AccessKeyID != first.AccessKeyID
		})
		second = credsOf(h.secret("app"))
	})
	h.phase("a deleted Secret is re-created", func(t *testing.T) {
		if err := k8s.Delete(ctx, h.secret("app")); err != nil {
			t.Fatal(err)
		}
		h.eventually(20*time.Second, "the Secret re-created", func() bool {
			s := h.secret("app")
			return s != nil && credsOf(s) != nil && credsOf(s).AccessKeyID != second.AccessKeyID
		})
	})
	h.phase("a spec change re-issues at once", func(t *testing.T) {
		h.change("app", func(ar *rkv1.AssumedRole) { ar.Spec.AssumeRole.SessionName = "renamed" })
		h.eventually(20*time.Second, "re-issue after a spec change", func() bool {
			calls := h.sts.Calls()
			return len(calls) > 0 && calls[len(calls)-1].SessionName == "renamed"
		})
		h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonRenewed, 20*time.Second)
		if n := h.sts.CallCount("AssumeRole"); n != 4 {
			t.Errorf("%d AssumeRole calls, want 4 (first, removed key, deleted Secret, spec change)", n)
		}
	})
}
