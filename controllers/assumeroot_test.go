package controllers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// AssumeRoot: target, task policy ARN in the region's partition, 900 s by default, the regional
// endpoint; without any region it is refused before reaching AWS.
func TestAssumeRoot(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.opts.RequireAccessPolicy = true
	h.policy("root", rkv1.AssumedRolePolicySpec{Namespaces: []string{h.ns}, AllowedRootTargets: []string{"444455556666"}, AllowedTaskPolicies: []rkv1.RootTaskPolicy{rkv1.TaskPolicySQSUnlockQueuePolicy}})
	h.opts.Region = ""
	h.start()
	h.create(h.ns, "unlock", rkv1.AssumedRoleSpec{Region: "eu-central-1", AssumeRoot: &rkv1.AssumeRootSpec{TargetPrincipal: "444455556666", TaskPolicy: rkv1.TaskPolicySQSUnlockQueuePolicy}})
	h.create(h.ns, "no-region", rootSpec("444455556666", rkv1.TaskPolicySQSUnlockQueuePolicy))
	ar := h.waitCondition("unlock", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	calls := h.sts.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls, want 1", len(calls))
	}
	c := calls[0]
	if c.Action != "AssumeRoot" || c.TargetPrincipal != "444455556666" || c.TaskPolicyArn != "arn:aws:iam::aws:policy/root-task/SQSUnlockQueuePolicy" || c.DurationSeconds != 900 || c.Region != "eu-central-1" {
		t.Errorf("STS received %+v", c)
	}
	if lifetime := ar.Status.Expiration.Sub(ar.Status.LastIssuedTime.Time); lifetime < 899*time.Second || lifetime > 901*time.Second {
		t.Errorf("root session lasts %v, want 900 s", lifetime)
	}
	if renew := ar.Status.RenewalTime.Sub(ar.Status.LastIssuedTime.Time); renew > 10*time.Minute || renew < 9*time.Minute {
		t.Errorf("renewal after %v, want about 10 minutes", renew)
	}
	id, err := h.stsClient().GetCallerIdentity(context.Background(), "eu-central-1", credsOf(h.secret("unlock")))
	if err != nil || id.Arn != "arn:aws:iam::444455556666:root" {
		t.Errorf("the root session authenticates as %+v (%v)", id, err)
	}
	nr := h.waitCondition("no-region", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonInvalidSpec, 30*time.Second)
	if msg := condition(nr, rkv1.ConditionStalled).Message; !strings.Contains(msg, "AssumeRoot needs a region") {
		t.Errorf("no-region message %q", msg)
	}
}
