package controllers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// podTemplate is the pod template of a workload named name that reads Secret secret (none when "")
// into its environment.
func podTemplate(name, secret string) corev1.PodTemplateSpec {
	c := corev1.Container{Name: "app", Image: "app:1"}
	if secret != "" {
		c.EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: secret}}}}
	}
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{c}},
	}
}

func (h *harness) workloads() {
	h.t.Helper()
	ctx := context.Background()
	sel := func(name string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
	}
	// db mounts the Secret instead of reading it into the environment.
	db := podTemplate("db", "")
	db.Spec.Volumes = []corev1.Volume{{Name: "aws", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
		{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}}}}}}}
	objs := []client.Object{
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: h.ns}, Spec: appsv1.DeploymentSpec{Selector: sel("api"), Template: podTemplate("api", "app")}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "unlisted", Namespace: h.ns}, Spec: appsv1.DeploymentSpec{Selector: sel("unlisted"), Template: podTemplate("unlisted", "app")}},
		// bystander is listed but does not use the Secret: a tenant cannot roll it.
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "bystander", Namespace: h.ns}, Spec: appsv1.DeploymentSpec{Selector: sel("bystander"), Template: podTemplate("bystander", "other")}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: h.ns}, Spec: appsv1.StatefulSetSpec{Selector: sel("db"), Template: db}},
	}
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			h.t.Fatal(err)
		}
	}
}

func restartedAt(t *testing.T, obj client.Object) (string, int64) {
	t.Helper()
	if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatal(err)
	}
	switch o := obj.(type) {
	case *appsv1.Deployment:
		return o.Spec.Template.Annotations[rkv1.AnnotationRestartedAt], o.Generation
	case *appsv1.StatefulSet:
		return o.Spec.Template.Annotations[rkv1.AnnotationRestartedAt], o.Generation
	}
	return "", 0
}

// Rollout restart patches exactly the listed targets that use the Secret, once per rotation and
// not on the first issue; a listed workload that does not use the Secret is left alone and
// reported, and so is a missing target, without failing the rotation.
func TestRolloutRestartOncePerRotation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{TimeScale: 90}) // 900 s lasts 10 s
	h.workloads()
	h.start()
	h.assumedRole("app", func(ar *rkv1.AssumedRole) {
		ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](900)
		ar.Spec.RolloutRestartTargets = []rkv1.RolloutRestartTarget{{Kind: "Deployment", Name: "api"}, {Kind: "StatefulSet", Name: "db"}, {Kind: "DaemonSet", Name: "missing"}, {Kind: "Deployment", Name: "bystander"}}
	})
	api := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: h.ns}}
	bystander := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "bystander", Namespace: h.ns}}
	db := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: h.ns}}
	unlisted := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "unlisted", Namespace: h.ns}}

	ar := h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	if v, _ := restartedAt(t, api); v != "" {
		t.Fatalf("restarted on the first issue: %q", v)
	}
	_, apiGen0 := restartedAt(t, api)
	_, dbGen0 := restartedAt(t, db)
	_, unlistedGen0 := restartedAt(t, unlisted)
	_, bystanderGen0 := restartedAt(t, bystander)

	// Two rotations.
	var issued []string
	h.eventually(40*time.Second, "two rotations", func() bool {
		ar = h.get("app")
		if ar.Status.LastIssuedTime != nil && (len(issued) == 0 || issued[len(issued)-1] != ar.Status.LastIssuedTime.UTC().Format(time.RFC3339)) {
			issued = append(issued, ar.Status.LastIssuedTime.UTC().Format(time.RFC3339))
		}
		return len(issued) >= 3 && ar.Status.RolloutRestart != nil && ar.Status.RolloutRestart.Time.UTC().Format(time.RFC3339) == issued[len(issued)-1]
	})
	rotations := int64(h.sts.CallCount("AssumeRole") - 1)
	apiStamp, apiGen := restartedAt(t, api)
	dbStamp, dbGen := restartedAt(t, db)
	if _, gen := restartedAt(t, unlisted); gen != unlistedGen0 {
		t.Errorf("an unlisted Deployment was changed")
	}
	if stamp, gen := restartedAt(t, bystander); gen != bystanderGen0 || stamp != "" {
		t.Errorf("a listed Deployment that does not use the Secret was restarted")
	}
	if apiGen-apiGen0 != rotations || dbGen-dbGen0 != rotations {
		t.Errorf("after %d rotations the Deployment moved %d generations and the StatefulSet %d; want one each per rotation", rotations, apiGen-apiGen0, dbGen-dbGen0)
	}
	last := secretIssuedAt(t, h)
	if apiStamp != last || dbStamp != last {
		t.Errorf("restartedAt %q / %q, want the Secret's issue time %q", apiStamp, dbStamp, last)
	}
	rr := ar.Status.RolloutRestart
	if fmt.Sprint(rr.Restarted) != "[Deployment/api StatefulSet/db]" || fmt.Sprint(rr.NotFound) != "[DaemonSet/missing]" || fmt.Sprint(rr.Skipped) != "[Deployment/bystander]" {
		t.Errorf("rolloutRestart %+v", rr)
	}
	if c := condition(ar, rkv1.ConditionReady); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "not found: DaemonSet/missing") ||
		!strings.Contains(c.Message, "skipped (their pods do not use the Secret): Deployment/bystander") {
		t.Errorf("Ready %+v", c)
	}
	events := strings.Join(h.events(), "\n")
	if !strings.Contains(events, "RolloutRestarted: restarted Deployment/api, StatefulSet/db") || !strings.Contains(events, "could not restart DaemonSet/missing") ||
		!strings.Contains(events, "did not restart Deployment/bystander: their pod templates do not use Secret app") {
		t.Errorf("events:\n%s", events)
	}
}

func secretIssuedAt(t *testing.T, h *harness) string {
	t.Helper()
	return h.secret("app").Annotations[rkv1.AnnotationIssuedAt]
}

// Changing rolekeeper.io/rotate issues exactly one new set of credentials per value, also while
// a failure backoff is in force.
func TestManualRotation(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.start()
	h.assumedRole("app", nil)
	h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	rotate := func(v string) { h.annotate("app", rkv1.AnnotationRotate, v) }
	h.phase("a new value rotates once", func(t *testing.T) {
		before := credsOf(h.secret("app")).AccessKeyID
		rotate("2026-11-22T10:00")
		h.eventually(20*time.Second, "the rotation", func() bool { return credsOf(h.secret("app")).AccessKeyID != before })
		h.poke("app")
		if n := h.sts.CallCount("AssumeRole"); n != 2 {
			t.Errorf("%d AssumeRole calls after one rotation request and a further reconcile, want 2", n)
		}
		ar := h.get("app")
		if ar.Status.RotateRequest != "2026-11-22T10:00" || h.secret("app").Annotations[rkv1.AnnotationRotate] != "2026-11-22T10:00" {
			t.Errorf("handled value: status %q, Secret %q", ar.Status.RotateRequest, h.secret("app").Annotations[rkv1.AnnotationRotate])
		}
	})
	h.phase("a new value goes ahead during a failure backoff", func(t *testing.T) {
		// A terminal failure puts a 10-minute backoff in force.
		h.sts.FailNext(1, "AccessDenied", 403, "denied")
		rotate("fails")
		h.waitCondition("app", rkv1.ConditionStalled, metav1.ConditionTrue, rkv1.ReasonIssueFailed, 20*time.Second)
		rotate("works")
		defer func() {
			if t.Failed() {
				t.Logf("final status: %+v", h.get("app").Status)
			}
		}()
		h.eventually(20*time.Second, "the rotation during backoff", func() bool {
			ar := h.get("app")
			c := condition(ar, rkv1.ConditionReady)
			return c.Status == metav1.ConditionTrue && c.Reason == rkv1.ReasonRenewed && ar.Status.RotateRequest == "works"
		})
		h.poke("app")
		if n := h.sts.CallCount("AssumeRole"); n != 4 {
			t.Errorf("%d AssumeRole calls, want 4 (issue, rotation, failed rotation, rotation during backoff)", n)
		}
	})
}

// kubeletMirror writes data into dir the way the kubelet updates a Secret volume: a new
// timestamped directory, an atomic rename of the ..data symlink onto it, and per-key symlinks
// through ..data.
func kubeletMirror(dir string, data map[string][]byte) error {
	ts := filepath.Join(dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05.000000000"))
	if err := os.MkdirAll(ts, 0o755); err != nil {
		return err
	}
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(ts, k), v, 0o644); err != nil {
			return err
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for k := range data {
		link := filepath.Join(dir, k)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", k), link); err != nil {
				return err
			}
		}
	}
	if old != "" && old != filepath.Base(ts) {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

// A long-running aws-sdk-go-v2 client configured only through AWS_CONFIG_FILE (credential_process
// reading the mounted Secret) keeps authenticating across rotations and past the first
// credentials' expiry, while the Secret is mirrored into a directory as the kubelet does.
func TestCredentialProcessConsumerAcrossRotations(t *testing.T) {
	h := newHarness(t, ststest.Options{TimeScale: 90}) // 900 s lasts 10 s
	dir := t.TempDir()
	h.start()
	h.assumedRole("app", func(ar *rkv1.AssumedRole) {
		ar.Spec.AssumeRole.DurationSeconds = ptr.To[int32](900)
		ar.Spec.Secret.CredentialProcess = &rkv1.CredentialProcessSpec{MountPath: dir}
	})
	h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	firstExpiry := credsOf(h.secret("app")).Expiration

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mirrored := make(chan error, 1)
	sync := func() error {
		s := h.secret("app")
		if s == nil {
			return fmt.Errorf("the Secret disappeared")
		}
		return kubeletMirror(dir, s.Data)
	}
	if err := sync(); err != nil {
		t.Fatal(err)
	}
	go func() {
		var rv string
		for ctx.Err() == nil {
			if s := h.secret("app"); s != nil && s.ResourceVersion != rv {
				if err := kubeletMirror(dir, s.Data); err != nil {
					mirrored <- err
					return
				}
				rv = s.ResourceVersion
			}
			time.Sleep(200 * time.Millisecond)
		}
		mirrored <- nil
	}()

	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	// With an expiry window, as README advises for aws-sdk-go-v2: without one the SDK keeps the
	// credentials to their last instant, and a call signed then may arrive after it (1 call in
	// about 400 failed so under load). The credentials here live 10 s and rotate at 6 s.
	cfg, err := config.LoadDefaultConfig(ctx, config.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = time.Second }))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Region != "us-east-1" {
		t.Errorf("region from the rendered config: %q", cfg.Region)
	}
	consumer := awssts.NewFromConfig(cfg, func(o *awssts.Options) { o.BaseEndpoint = aws.String(h.sts.URL); o.RetryMaxAttempts = 1 })

	calls, failures := 0, 0
	var failed []string
	deadline := time.Now().Add(75 * time.Second)
	for {
		out, err := consumer.GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{})
		calls++
		if err != nil {
			failures++
			failed = append(failed, err.Error())
		} else if !strings.Contains(aws.ToString(out.Arn), ":assumed-role/app/") {
			t.Fatalf("consumer authenticated as %s", aws.ToString(out.Arn))
		}
		keys := consumerKeys(h.sts)
		if (len(keys) >= 4 && time.Now().After(firstExpiry.Add(time.Second))) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-mirrored; err != nil {
		t.Fatal(err)
	}
	keys := consumerKeys(h.sts)
	t.Logf("%d calls with %d credential sets, %d failures", calls, len(keys), failures)
	if failures > 0 {
		t.Errorf("%d of %d calls failed: %v", failures, calls, failed)
	}
	if len(keys) < 4 {
		t.Errorf("the consumer used %d credential sets, want the first and at least three rotations", len(keys))
	}
}

// consumerKeys are the access keys GetCallerIdentity was signed with, in order of first use.
func consumerKeys(srv *ststest.Server) []string {
	seen := map[string]bool{}
	var keys []string
	for _, c := range srv.Calls() {
		if c.Action == "GetCallerIdentity" && c.Code == "" && !seen[c.CallerAccessKey] {
			seen[c.CallerAccessKey] = true
			keys = append(keys, c.CallerAccessKey)
		}
	}
	sort.Strings(keys)
	return keys
}

// secret.template adds rendered keys; a template that cannot render is TemplateInvalid before
// any STS call and leaves the Secret as it was; fixing it re-renders without calling STS.
func TestSecretTemplate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, ststest.Options{})
	h.start()
	h.assumedRole("app", func(ar *rkv1.AssumedRole) {
		ar.Spec.Secret.Template = &rkv1.SecretTemplate{Data: map[string]string{
			"settings.json": `{"key": {{ quote .AccessKeyID }}, "region": {{ quote .Region }}, "expires": {{ unix .Expiration }}}`,
		}}
	})
	h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, rkv1.ReasonIssued, 30*time.Second)
	s := h.secret("app")
	c := credsOf(s)
	want := fmt.Sprintf(`{"key": %q, "region": "us-east-1", "expires": %d}`, c.AccessKeyID, c.Expiration.Unix())
	if string(s.Data["settings.json"]) != want || len(s.Data["credentials"]) == 0 {
		t.Fatalf("settings.json %q, want %q", s.Data["settings.json"], want)
	}

	h.phase("an invalid template stalls and leaves the Secret as it was", func(t *testing.T) {
		h.change("app", func(ar *rkv1.AssumedRole) {
			ar.Spec.Secret.Template.Data["settings.json"] = `{{ range 1000000000 }}{{ end }}`
		})
		ar := h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionFalse, rkv1.ReasonTemplateInvalid, 30*time.Second)
		if msg := condition(ar, rkv1.ConditionStalled).Message; !strings.Contains(msg, "range is not allowed") {
			t.Errorf("Stalled message %q", msg)
		}
		h.poke("app")
		if after := h.secret("app"); after.ResourceVersion != s.ResourceVersion {
			t.Error("the Secret changed under an invalid template")
		}
	})
	h.phase("a fixed template renders without calling STS", func(t *testing.T) {
		h.change("app", func(ar *rkv1.AssumedRole) { ar.Spec.Secret.Template.Data["settings.json"] = `{{ .Region | upper }}` })
		h.eventually(20*time.Second, "the fixed template rendered", func() bool { return string(h.secret("app").Data["settings.json"]) == "US-EAST-1" })
		h.waitCondition("app", rkv1.ConditionReady, metav1.ConditionTrue, "", 20*time.Second)
		if n := h.sts.CallCount("AssumeRole"); n != 1 {
			t.Errorf("%d AssumeRole calls, want 1: templates change only how credentials are written", n)
		}
	})
}
