package controllers_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// rotated waits until the AssumedRole has answered rotate request value with Ready credentials.
func (h *harness) rotated(name, value string) *rkv1.AssumedRole {
	h.t.Helper()
	var ar *rkv1.AssumedRole
	h.eventually(30*time.Second, name+" rotated for "+value, func() bool {
		ar = h.get(name)
		c := condition(ar, rkv1.ConditionReady)
		return ar.Status.RotateRequest == value && c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == ar.Generation
	})
	return ar
}

// A cache that lags the operator's own writes by half a second, and a status write that fails
// once after a rotation: the retry finds the old Secret in the cache, but the Secret read past
// the cache just before calling STS shows the rotation done. One AssumeRole call and one rollout
// restart for one rotation.
func TestLaggingCacheRotatesOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.lagSecrets = 500 * time.Millisecond
	h.workloads()
	h.start()
	h.assumedRole("app", func(ar *rkv1.AssumedRole) {
		ar.Spec.RolloutRestartTargets = []rkv1.RolloutRestartTarget{{Kind: "Deployment", Name: "api"}}
	})
	h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	api := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: h.ns}}
	_, gen0 := restartedAt(t, api)
	calls0 := h.sts.CallCount("AssumeRole")

	h.failStatus.Store(1)
	h.annotate("app", rkv1.AnnotationRotate, "r1")
	// Only the retry after the failed status write can record the rotation in status.
	ar := h.rotated("app", "r1")
	if h.failStatus.Load() >= 0 {
		t.Fatal("the status write did not fail: the test proves nothing")
	}
	if n := h.sts.CallCount("AssumeRole") - calls0; n != 1 {
		t.Errorf("%d AssumeRole calls for one rotation, want 1", n)
	}
	if _, gen := restartedAt(t, api); gen-gen0 != 1 {
		t.Errorf("the Deployment moved %d generations for one rotation, want 1", gen-gen0)
	}
	if c := credsOf(h.secret("app")); c == nil || ar.Status.Expiration == nil || !c.Expiration.Equal(ar.Status.Expiration.Time) {
		t.Errorf("status %v does not describe the Secret's credentials", ar.Status.Expiration)
	}
}

// What the reconciler remembers of its own writes, to tell a lagging cache, it forgets once the
// cache shows them: with N AssumedRoles it would otherwise hold N records for good. A rotation
// writes a new record, and that too goes once the cache has the rotated Secret. (Issue times are
// in whole seconds: a rotation within the second of the last issuance does not move the Secret's
// issue time, its watch event is not an issuance, and the record stays until the next one. The
// rotation here waits for the next second.)
func TestOwnWritesForgottenOnceCached(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.start()
	h.assumedRole("app", nil)
	ar := h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	key := types.NamespacedName{Namespace: h.ns, Name: "app"}
	h.eventually(10*time.Second, "the first issuance forgotten", func() bool { return !h.rec.Remembers(key) })
	time.Sleep(time.Until(ar.Status.LastIssuedTime.Add(time.Second)))
	h.annotate("app", rkv1.AnnotationRotate, "r1")
	h.rotated("app", "r1")
	h.eventually(10*time.Second, "the rotation forgotten", func() bool { return !h.rec.Remembers(key) })
}

// Someone else's writes landing between the operator's read and its write: the credentials of
// the STS call are written without another call, and a Secret that changed hands is never
// adopted.
func TestSecretWriteRaces(t *testing.T) {
	t.Run("deleted and re-created by someone else: left untouched", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, ststest.Options{})
		h.start()
		h.assumedRole("app", nil)
		h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
		foreign := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: h.ns}, Data: map[string][]byte{"theirs": []byte("keep")}}
		var once atomic.Bool
		h.beforeSecretWrite = func(verb string, _ *corev1.Secret) {
			if verb == "update" && once.CompareAndSwap(false, true) {
				old := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: h.ns}}
				if err := k8s.Delete(context.Background(), old); err != nil {
					t.Error(err)
				}
				if err := k8s.Create(context.Background(), foreign.DeepCopy()); err != nil {
					t.Error(err)
				}
			}
		}
		h.annotate("app", rkv1.AnnotationRotate, "r1")
		h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionFalse, rkv1.ReasonSecretConflict, 30*time.Second)
		got := h.secret("app")
		if len(got.OwnerReferences) != 0 || len(got.Data) != 1 || string(got.Data["theirs"]) != "keep" || len(got.Labels) != 0 {
			t.Errorf("the foreign Secret was changed: owners %v labels %v keys %v", got.OwnerReferences, got.Labels, keys(got.Data))
		}
	})

	t.Run("deleted before the update: created instead", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, ststest.Options{})
		h.start()
		h.assumedRole("app", nil)
		h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
		var once atomic.Bool
		h.beforeSecretWrite = func(verb string, s *corev1.Secret) {
			if verb == "update" && once.CompareAndSwap(false, true) {
				if err := k8s.Delete(context.Background(), s.DeepCopy()); err != nil {
					t.Error(err)
				}
			}
		}
		h.annotate("app", rkv1.AnnotationRotate, "r1")
		h.rotated("app", "r1")
		if !once.Load() {
			t.Fatal("no update was sent: the test proves nothing")
		}
		calls := h.sts.Calls()
		last := calls[len(calls)-1]
		if c := credsOf(h.secret("app")); c == nil || c.AccessKeyID != last.IssuedAccessKey {
			t.Errorf("the Secret does not hold the credentials of the last call")
		}
		if n := h.sts.CallCount("AssumeRole"); n != 2 {
			t.Errorf("%d AssumeRole calls, want 2: the rotation's credentials are written, not issued again", n)
		}
	})

	t.Run("changed before a delete that changes its type: read again", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, ststest.Options{})
		h.start()
		h.assumedRole("app", nil)
		h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
		var once atomic.Bool
		h.beforeSecretWrite = func(verb string, s *corev1.Secret) {
			if verb == "delete" && once.CompareAndSwap(false, true) {
				// Someone annotates the Secret: the copy the operator is deleting is stale.
				cur := &corev1.Secret{}
				if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(s), cur); err != nil {
					t.Error(err)
					return
				}
				cur.Annotations["example.com/seen"] = "yes"
				if err := k8s.Update(context.Background(), cur); err != nil {
					t.Error(err)
				}
			}
		}
		h.change("app", imagePull)
		h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonRenewed, 30*time.Second)
		if !once.Load() {
			t.Fatal("no delete was sent: the test proves nothing")
		}
		if s := h.secret("app"); s.Type != corev1.SecretTypeDockerConfigJson {
			t.Errorf("Secret type %s", s.Type)
		}
		if a, e := h.sts.CallCount("AssumeRole"), h.sts.CallCount("GetAuthorizationToken"); a != 2 || e != 1 {
			t.Errorf("%d AssumeRole and %d GetAuthorizationToken calls, want 2 and 1", a, e)
		}
	})
}

// A session so short that it is due again before the call that issued it returns (a slow
// AssumeRoot): the next issuance is still scheduled, by itself.
func TestSlowShortSessionsKeepRenewing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{TimeScale: 30}) // 15 s lasts half a second
	h.sts.SetLatency(4 * time.Second)
	h.start()
	h.create(h.ns, "unlock", rkv1.AssumedRoleSpec{AssumeRoot: &rkv1.AssumeRootSpec{TargetPrincipal: "444455556666", TaskPolicy: rkv1.TaskPolicyS3UnlockBucketPolicy, DurationSeconds: ptr.To[int32](15)}})
	h.eventually(40*time.Second, "three issuances", func() bool { return h.sts.CallCount("AssumeRoot") >= 3 })
}

// A region of a known partition that does not exist: its endpoint is not in DNS. Stalled with
// RegionUnknown, not retried as a network failure.
func TestUnknownRegionStalls(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	noSuchHost := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.DialContext = func(_ context.Context, _, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
	})
	h.stsMod = func(o *sts.Options) { o.Endpoint, o.HTTPClient = "", noSuchHost }
	h.start()
	h.assumedRole("app", func(ar *rkv1.AssumedRole) { ar.Spec.Region = "us-nowhere-9" })
	ar := h.waitCondition("app", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonRegionUnknown, 30*time.Second)
	f := ar.Status.LastFailure
	if f == nil || f.Code != sts.CodeRegionUnknown || f.Retryable || !strings.Contains(f.Message, "sts.us-nowhere-9.amazonaws.com") {
		t.Errorf("lastFailure %+v", f)
	}
	if ready := condition(ar, rkv1.ConditionReady); ready.Reason != rkv1.ReasonRegionUnknown {
		t.Errorf("Ready %+v", ready)
	}
}
