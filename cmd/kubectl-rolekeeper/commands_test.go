package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/test/harness"
)

// rowOf returns the status line of an AssumedRole, split into its columns.
func rowOf(t *testing.T, out, name string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		f := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(line), -1)
		for i := range f {
			if f[i] == name && i <= 1 {
				return f
			}
		}
	}
	t.Fatalf("no line for %s in\n%s", name, out)
	return nil
}

// status prints one line per AssumedRole with Ready, reason, expiry, renewal and last failure as
// the operator recorded them; -A adds the namespace.
func TestStatus(t *testing.T) {
	scenario(t)
	out := mustRun(t, "status", "-n", ns)
	if !strings.HasPrefix(out, "NAME") || !regexp.MustCompile(`NAME +READY +REASON +EXPIRES IN +RENEWS IN +LAST FAILURE`).MatchString(out) || !strings.Contains(out, "LAST FAILURE") {
		t.Errorf("header missing:\n%s", out)
	}
	app := rowOf(t, out, "app")
	// 1800 s sessions renewed 10 minutes before expiry: expires in 29-30m, renews in about 20m.
	if app[1] != "True" || app[2] != "Issued" || !regexp.MustCompile(`^(29|30)m$`).MatchString(app[3]) || !regexp.MustCompile(`^(18|19|20)m$`).MatchString(app[4]) || app[5] != "-" {
		t.Errorf("app: %q", app)
	}
	denied := rowOf(t, out, "app-denied")
	if denied[1] != "False" || denied[2] != "IssueFailed (stalled)" || denied[3] != "-" || !strings.HasPrefix(denied[5], "AccessDenied ") {
		t.Errorf("app-denied: %q", denied)
	}
	if other := rowOf(t, out, "other"); other[1] != "False" || other[2] != "NotPermitted (stalled)" || other[5] != "-" {
		t.Errorf("other: %q", other)
	}
	all := mustRun(t, "status", "-A")
	if !strings.HasPrefix(all, "NAMESPACE") || rowOf(t, all, "app")[0] != ns {
		t.Errorf("status -A:\n%s", all)
	}
	if out := mustRun(t, "status", "-n", "default"); !strings.Contains(out, "No AssumedRoles in namespace default") {
		t.Errorf("empty namespace: %q", out)
	}
}

// status --watch prints a new line when an AssumedRole changes, and ends when interrupted.
func TestStatusWatch(t *testing.T) {
	scenario(t)
	ctx, cancel := context.WithCancel(context.Background())
	var out harness.SyncBuffer
	done := make(chan error, 1)
	go func() { done <- kubectlRolekeeper(ctx, &out, "status", "-n", ns, "--watch") }()
	waitOutput(t, &out, "listed AssumedRoles", func(s string) bool { return strings.Count(s, "\nother ") == 1 })
	mustRun(t, "rotate", "app", "-n", ns, "--no-wait")
	waitOutput(t, &out, "a line for the rotated app", func(s string) bool { return strings.Count(s, "\napp ") >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("status --watch: %v", err)
	}
	noCredentials(t, out.String())
}

func waitOutput(t *testing.T, out *harness.SyncBuffer, what string, cond func(string) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond(out.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s in\n%s", what, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rotate sets rolekeeper.io/rotate, waits for the new issuance and prints it; a rotation STS
// refuses fails with the AWS code; --all --no-wait requests every AssumedRole's and returns.
func TestRotate(t *testing.T) {
	scenario(t)
	before := get(t, "app")
	keyBefore := accessKey(t, "app")
	out := mustRun(t, "rotate", "app", "-n", ns)
	after := get(t, "app")
	value := after.Annotations[rkv1.AnnotationRotate]
	if value == "" || value == before.Annotations[rkv1.AnnotationRotate] || after.Status.RotateRequest != value {
		t.Fatalf("annotation %q, status.rotateRequest %q", value, after.Status.RotateRequest)
	}
	if accessKey(t, "app") == keyBefore {
		t.Error("rotate returned but the Secret holds the same credentials")
	}
	want := "rotated plugin/app: new credentials in Secret app issued at " + rfc3339(after.Status.LastIssuedTime.Time)
	if !strings.Contains(out, "rotation requested for plugin/app") || !strings.Contains(out, want) || !strings.Contains(out, "valid until "+rfc3339(after.Status.Expiration.Time)) ||
		!strings.Contains(out, "next renewal "+rfc3339(after.Status.RenewalTime.Time)) {
		t.Errorf("rotate output\n%s\nwant %q and the status's expiry and renewal", out, want)
	}

	out, err := runPlugin(t, "rotate", "app-denied", "-n", ns, "--timeout", "30s")
	if err == nil || !strings.Contains(err.Error(), "rotation failed for app-denied") || !strings.Contains(out, "rotation of plugin/app-denied failed with AccessDenied") {
		t.Errorf("rotating app-denied: %v\n%s", err, out)
	}

	out = mustRun(t, "rotate", "--all", "-n", ns, "--no-wait")
	for _, name := range []string{"app", "app-denied", "other"} {
		if !strings.Contains(out, "rotation requested for plugin/"+name) || get(t, name).Annotations[rkv1.AnnotationRotate] == "" {
			t.Errorf("--all did not request %s:\n%s", name, out)
		}
	}
	if _, err := runPlugin(t, "rotate", "-n", ns); err == nil {
		t.Error("rotate without a name or --all succeeded")
	}
}

func accessKey(t *testing.T, name string) string {
	t.Helper()
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatal(err)
	}
	c, ok := secretdata.Credentials(s.Data)
	if !ok {
		t.Fatalf("Secret %s holds no credentials", name)
	}
	return c.AccessKeyID
}

// explain evaluates the policies as the operator does: its verdict matches the operator's, names
// the policy and pattern, and its planned renewal is the one the operator scheduled.
func TestExplain(t *testing.T) {
	scenario(t)
	app := waitFor(t, "app", func(ar *rkv1.AssumedRole) bool { return ar.Status.FailedAttempts == 0 && ar.Status.RenewalTime != nil })
	out := mustRun(t, "explain", "app", "-n", ns)
	for _, want := range []string{
		"AssumedRole plugin/app",
		"request:  AssumeRole arn:aws:iam::111122223333:role/app for 1800 s",
		"Ready:    True",
		"decision: allowed by AssumedRolePolicy plugin-apps",
		"policy:          renewBefore 10m0s",
		"planned renewal: " + rfc3339(app.Status.RenewalTime.Time),
		"next renewal:    " + rfc3339(app.Status.RenewalTime.Time),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain app lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`plugin-apps +yes, by name +allows: allowedRoleArns "arn:aws:iam::111122223333:role/app\*"`).MatchString(out) {
		t.Errorf("explain app does not name the policy and pattern that allow it:\n%s", out)
	}

	other := get(t, "other")
	out = mustRun(t, "explain", "other", "-n", ns)
	operatorSays := condition(other, rkv1.ConditionReady).Message
	if !strings.Contains(out, "decision: refused: "+operatorSays) || !strings.Contains(out, "refuses: no allowedRoleArns pattern matches (1 patterns)") {
		t.Errorf("explain other does not give the operator's refusal %q:\n%s", operatorSays, out)
	}
	if !strings.Contains(out, "does not exist (yet)") {
		t.Errorf("explain other should say it has no Secret:\n%s", out)
	}

	denied := waitFor(t, "app-denied", func(ar *rkv1.AssumedRole) bool { return ar.Status.FailedAttempts > 0 })
	out = mustRun(t, "explain", "app-denied", "-n", ns)
	if !strings.Contains(out, "decision: allowed by AssumedRolePolicy plugin-apps") ||
		!strings.Contains(out, "next attempt:") || !strings.Contains(out, "the last with AccessDenied (a terminal failure") {
		t.Errorf("explain app-denied (status %+v):\n%s", denied.Status, out)
	}
}

// inspect lists the Secret's keys, expiry and stamp annotations, and no credential value.
func TestInspect(t *testing.T) {
	scenario(t)
	app := get(t, "app")
	out := mustRun(t, "inspect", "app", "-n", ns)
	for _, want := range []string{"Secret plugin/app of AssumedRole app", "type:        Opaque", "owned:       yes",
		"expires:     " + rfc3339(app.Status.Expiration.Time), "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "credentials ",
		rkv1.AnnotationIssuedAt + ": ", rkv1.AnnotationRequestHash + ": ", "labels:      " + rkv1.LabelAssumedRole + "=app"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect lacks %q:\n%s", want, out)
		}
	}
	if _, err := runPlugin(t, "inspect", "other", "-n", ns); err == nil || !strings.Contains(err.Error(), "has no Secret other yet") {
		t.Errorf("inspect of an AssumedRole without a Secret: %v", err)
	}
}
