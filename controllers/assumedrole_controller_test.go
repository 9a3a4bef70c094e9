package controllers_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/controllers"
	"github.com/rolekeeper/rolekeeper/pkg/renewal"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

func credsOf(s *corev1.Secret) *sts.Credentials {
	in, ok := secretdata.Credentials(s.Data)
	if !ok {
		return nil
	}
	return &sts.Credentials{AccessKeyID: in.AccessKeyID, SecretAccessKey: in.SecretAccessKey, SessionToken: in.SessionToken, Expiration: in.Expiration}
}

func TestCreateIssuesSecretAndReady(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.start()
	h.assumedRole("reader", func(ar *rkv1.AssumedRole) {
		ar.Spec.Secret = rkv1.SecretSpec{Profile: "reader", CredentialProcess: &rkv1.CredentialProcessSpec{MountPath: "/creds"}, Labels: map[string]string{"team": "payments"}}
		ar.Spec.AssumeRole.Tags = []rkv1.SessionTag{{Key: "team", Value: "payments"}}
	})
	ar := h.waitCondition("reader", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)

	secret := h.secret("reader")
	if secret == nil {
		t.Fatal("no Secret")
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_CREDENTIAL_EXPIRATION", "AWS_REGION", "credentials", "config", "credential_process.json"} {
		if len(secret.Data[k]) == 0 {
			t.Errorf("Secret lacks %s", k)
		}
	}
	if secret.Type != corev1.SecretTypeOpaque || secret.Labels[rkv1.LabelAssumedRole] != "reader" || secret.Labels["team"] != "payments" {
		t.Errorf("type %s labels %v", secret.Type, secret.Labels)
	}
	if !metav1.IsControlledBy(secret, ar) {
		t.Errorf("owner references %v", secret.OwnerReferences)
	}
	for _, a := range []string{rkv1.AnnotationExpiration, rkv1.AnnotationIssuedAt, rkv1.AnnotationRequestHash} {
		if secret.Annotations[a] == "" {
			t.Errorf("Secret lacks annotation %s", a)
		}
	}
	if !strings.Contains(string(secret.Data["credentials"]), "[reader]") || !strings.Contains(string(secret.Data["config"]), "[profile reader]") {
		t.Errorf("files use the wrong profile:\n%s\n%s", secret.Data["credentials"], secret.Data["config"])
	}

	// The credentials in the Secret authenticate as the role.
	creds := credsOf(secret)
	id, err := h.stsClient().GetCallerIdentity(context.Background(), "us-east-1", creds)
	if err != nil {
		t.Fatalf("the Secret's credentials do not authenticate: %v", err)
	}
	if id.Arn != "arn:aws:sts::111122223333:assumed-role/reader/"+h.ns+".reader" || id.Arn != ar.Status.AssumedRoleUser.Arn {
		t.Errorf("caller %s, status %+v", id.Arn, ar.Status.AssumedRoleUser)
	}

	st := ar.Status
	if st.SecretName != "reader" || st.Expiration == nil || !st.Expiration.Time.Equal(creds.Expiration) || st.RenewalTime == nil ||
		st.LastIssuedTime == nil || st.PackedPolicySize == nil || st.ObservedGeneration != ar.Generation || st.FailedAttempts != 0 {
		t.Errorf("status %+v", st)
	}
	if !st.RenewalTime.After(st.LastIssuedTime.Time) || !st.RenewalTime.Before(st.Expiration) {
		t.Errorf("renewal %v not between issue %v and expiry %v", st.RenewalTime, st.LastIssuedTime, st.Expiration)
	}
	if c := condition(ar, rkv1.ConditionIssuing); c.Status != metav1.ConditionFalse {
		t.Errorf("Issuing %+v", c)
	}
	if c := condition(ar, rkv1.ConditionStalled); c.Status != metav1.ConditionFalse {
		t.Errorf("Stalled %+v", c)
	}

	// The operator's tags and the user's arrived at STS.
	calls := h.sts.Calls()
	if n := h.sts.CallCount("AssumeRole"); n != 1 || calls[0].Action != "AssumeRole" {
		t.Fatalf("%d AssumeRole calls, want 1", n)
	}
	want := []ststest.Tag{{Key: "team", Value: "payments"}, {Key: "kubernetes-namespace", Value: h.ns}, {Key: "kubernetes-name", Value: "reader"}}
	if len(calls[0].Tags) != 3 || calls[0].Tags[0] != want[0] || calls[0].Tags[1] != want[1] || calls[0].Tags[2] != want[2] {
		t.Errorf("tags sent %v, want %v", calls[0].Tags, want)
	}
	h.eventually(10*time.Second, "an Issued event", func() bool { return h.eventCount(rkv1.ReasonIssued) >= 1 })
}

// AssumedRoles applied together renew in different seconds, each at the time its Secret records,
// and a restart with valid Secrets makes zero STS calls and zero writes.
//
// Twelve 900 s sessions share a jitter window of 45 s: from the UID alone two of them would share
// a second about four times in five; the renewal slots keep them apart.
func TestRestartWithValidSecretsIsSilent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.opts.MaxConcurrentReconciles = 4
	h.start()
	var names []string
	for i := range 12 {
		names = append(names, fmt.Sprintf("r%02d", i))
		h.assumedRole(names[i], func(ar *rkv1.AssumedRole) { ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](900) })
	}
	for _, name := range names {
		h.waitCondition(name, rkv1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)
	}
	h.stop()
	calls := h.sts.CallCount("")
	versions := map[string]string{}
	seconds := map[int64]string{}
	slotted := 0
	for _, name := range names {
		ar, secret := h.get(name), h.secret(name)
		versions["ar/"+name] = ar.ResourceVersion
		versions["secret/"+name] = secret.ResourceVersion
		issued, err1 := time.Parse(time.RFC3339, secret.Annotations[rkv1.AnnotationIssuedAt])
		exp, err2 := time.Parse(time.RFC3339, secret.Annotations[rkv1.AnnotationExpiration])
		slot, err3 := 0, error(nil)
		if v, ok := secret.Annotations[rkv1.AnnotationRenewalSlot]; ok {
			slot, err3 = strconv.Atoi(v)
			slotted++
		}
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatalf("Secret %s annotations %v: %v", name, secret.Annotations, err)
		}
		want := renewal.Time(issued, exp, renewal.Policy{}, renewal.Seed(string(ar.UID), slot))
		if ar.Status.RenewalTime == nil || !ar.Status.RenewalTime.Time.Equal(want) {
			t.Errorf("%s: status.renewalTime %v, the Secret (slot %d) says %v", name, ar.Status.RenewalTime, slot, want)
			continue
		}
		if other, taken := seconds[want.Unix()]; taken {
			t.Errorf("%s and %s both renew at %v", name, other, want)
		}
		seconds[want.Unix()] = name
	}
	t.Logf("%d of %d Secrets record a renewal slot other than 0", slotted, len(names))

	before := map[string]int{}
	for _, name := range names {
		before[name] = h.reconciled(name)
	}
	h.start()
	for _, name := range names {
		h.waitReconciled(name, before[name], 30*time.Second)
	}
	if n := h.sts.CallCount(""); n != calls {
		t.Errorf("restart made %d STS calls", n-calls)
	}
	for _, name := range names {
		if v := h.get(name).ResourceVersion; v != versions["ar/"+name] {
			t.Errorf("AssumedRole %s was written after restart", name)
		}
		if v := h.secret(name).ResourceVersion; v != versions["secret/"+name] {
			t.Errorf("Secret %s was written after restart", name)
		}
	}
	if !strings.Contains(h.logs.String(), "Starting workers") {
		t.Error("the restarted manager never started its workers")
	}
}

// A status write that fails after the Secret was written does not cause a second STS call: the
// next reconcile reads the issuance from the Secret.
func TestFailedStatusWriteDoesNotReissue(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.failStatus.Store(2)
	h.start()
	h.assumedRole("app", nil)
	h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, "", 60*time.Second)
	if n := h.failStatus.Load(); n > 0 {
		t.Fatalf("the injected status failures were not used (%d left)", n)
	}
	if n := h.sts.CallCount("AssumeRole"); n != 1 {
		t.Errorf("%d AssumeRole calls, want 1 despite two failed status writes", n)
	}
	if !strings.Contains(h.logs.String(), "injected status write failure") {
		t.Error("the status write failure never happened")
	}
}

// The Secret rotates before expiry across three rotations, and sampled continuously it never
// holds expired credentials.
func TestRotationBeforeExpiry(t *testing.T) {
	t.Parallel()
	// 900 s at time scale 90 lasts 10 s: renewal about every 6 s.
	h := newHarness(t, ststest.Options{TimeScale: 90})
	h.start()
	h.assumedRole("rotating", func(ar *rkv1.AssumedRole) { ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](900) })
	h.waitCondition("rotating", rkv1.ConditionReady, metav1.ConditionTrue, "", 30*time.Second)

	seen := map[string]bool{}
	samples := 0
	deadline := time.Now().Add(60 * time.Second)
	for len(seen) < 4 && time.Now().Before(deadline) {
		s := h.secret("rotating")
		creds := credsOf(s)
		now := time.Now()
		if creds == nil || !now.Before(creds.Expiration) {
			t.Fatalf("at %v the Secret holds expired or incomplete credentials (expiry %v)", now, creds)
		}
		seen[creds.AccessKeyID] = true
		samples++
		time.Sleep(50 * time.Millisecond)
	}
	if len(seen) < 4 {
		t.Fatalf("saw %d sets of credentials in 60 s, want the first and three rotations", len(seen))
	}
	ar := h.get("rotating")
	if c := condition(ar, rkv1.ConditionReady); c.Reason != rkv1.ReasonRenewed {
		t.Errorf("Ready reason %s after rotations", c.Reason)
	}
	if n := h.sts.CallCount("AssumeRole"); n < 4 || n > len(seen)+1 {
		t.Errorf("%d AssumeRole calls for %d credential sets", n, len(seen))
	}
	t.Logf("%d samples over %d credential sets", samples, len(seen))
	if issued, renewed := h.eventCount(rkv1.ReasonIssued), h.eventCount(rkv1.ReasonRenewed); issued != 1 || renewed != 0 {
		t.Errorf("%d Issued and %d Renewed events over routine rotations, want 1 and 0", issued, renewed)
	}
}

// Many AssumedRoles applied at once are all issued, but announced within the event budget:
// status records each issuance, events do not double the writes.
func TestIssueEventsAreBudgeted(t *testing.T) {
	t.Parallel()
	const n = 60
	h := newHarness(t, ststest.Options{})
	h.opts.MaxConcurrentReconciles = 8
	h.start()
	start := time.Now()
	for i := range n {
		h.assumedRole(fmt.Sprintf("bulk-%02d", i), nil)
	}
	h.eventually(60*time.Second, "all Ready", func() bool {
		var list rkv1.AssumedRoleList
		if err := k8s.List(context.Background(), &list, client.InNamespace(h.ns)); err != nil {
			t.Fatal(err)
		}
		ready := 0
		for i := range list.Items {
			if c := condition(&list.Items[i], rkv1.ConditionReady); c != nil && c.Status == metav1.ConditionTrue && c.Reason == rkv1.ReasonIssued {
				ready++
			}
		}
		return ready == n
	})
	elapsed := time.Since(start)
	allowed := controllers.IssueEventBurst + int(controllers.IssueEventsPerSecond*(elapsed.Seconds()+1))
	if allowed >= n {
		t.Skipf("the %d issuances took %v, long enough for the budget to allow %d events: this run cannot tell a budget from none", n, elapsed, allowed)
	}
	// The reconciler's own count is exact at once; the events reach the API server later.
	sent := h.recorded(rkv1.ReasonIssued)
	if sent > allowed {
		t.Errorf("%d Issued events sent for %d issuances in %v; the budget allows %d", sent, n, elapsed, allowed)
	}
	if sent < controllers.IssueEventBurst {
		t.Errorf("%d Issued events sent, fewer than the burst of %d", sent, controllers.IssueEventBurst)
	}
	h.eventually(10*time.Second, "the sent Issued events on the API server", func() bool { return h.eventCount(rkv1.ReasonIssued) >= sent })
	t.Logf("%d issuances in %v, %d Issued events", n, elapsed, sent)
}
