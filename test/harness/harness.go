// Package harness holds what every suite that runs the operator against an API server shares:
// the integration tests of controllers/ (envtest, the reconciler in-process) and the end-to-end
// suites (test/e2e, test/node): creating and reading AssumedRoles, Secrets, policies and events,
// waiting for a condition, counting the STS calls of an AssumedRole, and the STS emulator as a
// process with its control API. Every helper fails the test on an error it did not expect.
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	"github.com/rolekeeper/rolekeeper/test/cluster"
)

// Eventually polls cond every 100 ms and fails the test when it does not hold within timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Tail is the last lines of s.
func Tail(s string, lines int) string {
	parts := strings.Split(s, "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// Create creates obj and fails the test when it cannot.
func Create(t testing.TB, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// Namespace creates a namespace with labels, deleted when the test ends.
func Namespace(t testing.TB, c client.Client, name string, labels map[string]string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	Create(t, c, ns)
	t.Cleanup(func() { _ = c.Delete(context.Background(), ns) })
	return name
}

// AssumedRole reads an AssumedRole and fails the test when it cannot.
func AssumedRole(t testing.TB, c client.Client, ns, name string) *rkv1.AssumedRole {
	t.Helper()
	ar := &rkv1.AssumedRole{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ar); err != nil {
		t.Fatal(err)
	}
	return ar
}

// Secret reads a Secret: nil when it does not exist; any other error fails the test.
func Secret(t testing.TB, c client.Client, ns, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Annotate sets one annotation on an AssumedRole.
func Annotate(t testing.TB, c client.Client, ns, name, key, value string) {
	t.Helper()
	ar := AssumedRole(t, c, ns, name)
	orig := ar.DeepCopy()
	if ar.Annotations == nil {
		ar.Annotations = map[string]string{}
	}
	ar.Annotations[key] = value
	// A merge patch of the annotation alone, without the resourceVersion: the operator may write
	// status between the read and this write, and an update would then fail with a conflict.
	if err := c.Patch(context.Background(), ar, client.MergeFrom(orig)); err != nil {
		t.Fatal(err)
	}
}

// Change applies mutate to the AssumedRole as it is now and updates it, reading and applying
// again on a conflict: the operator may write status between the read and the write.
func Change(t testing.TB, c client.Client, ns, name string, mutate func(*rkv1.AssumedRole)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ar := AssumedRole(t, c, ns, name)
		mutate(ar)
		return c.Update(context.Background(), ar)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Policy creates a cluster-scoped AssumedRolePolicy, deleted when the test ends.
func Policy(t testing.TB, c client.Client, name string, spec rkv1.AssumedRolePolicySpec) {
	t.Helper()
	p := &rkv1.AssumedRolePolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	Create(t, c, p)
	t.Cleanup(func() { _ = c.Delete(context.Background(), p) })
}

// AllowAll lets namespace ns assume every role.
func AllowAll(t testing.TB, c client.Client, ns string) {
	t.Helper()
	Policy(t, c, "allow-"+ns, rkv1.AssumedRolePolicySpec{Namespaces: []string{ns}, AllowedRoleArns: []string{"*"}})
}

// Condition is the AssumedRole's condition of type typ, nil when it has none.
func Condition(ar *rkv1.AssumedRole, typ string) *metav1.Condition {
	return meta.FindStatusCondition(ar.Status.Conditions, typ)
}

// WaitCondition waits until the AssumedRole has condition typ with status (and reason, when not
// empty) for its current generation.
func WaitCondition(t testing.TB, c client.Client, ns, name, typ string, status metav1.ConditionStatus, reason string, timeout time.Duration) *rkv1.AssumedRole {
	t.Helper()
	ar := &rkv1.AssumedRole{}
	Eventually(t, timeout, fmt.Sprintf("%s/%s %s=%s (%s)", ns, name, typ, status, reason), func() bool {
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ar); err != nil {
			if !apierrors.IsNotFound(err) {
				t.Fatal(err)
			}
			return false
		}
		cond := Condition(ar, typ)
		return cond != nil && cond.Status == status && (reason == "" || cond.Reason == reason) && cond.ObservedGeneration == ar.Generation
	})
	return ar
}

// WaitReady waits until the AssumedRole exists and is Ready for its current generation.
func WaitReady(t testing.TB, c client.Client, ns, name string, timeout time.Duration) *rkv1.AssumedRole {
	t.Helper()
	return WaitCondition(t, c, ns, name, rkv1.ConditionReady, metav1.ConditionTrue, "", timeout)
}

// Events are the events of namespace ns, each "reason: message".
func Events(t testing.TB, c client.Client, ns string) []string {
	t.Helper()
	var list corev1.EventList
	if err := c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(list.Items))
	for _, e := range list.Items {
		out = append(out, e.Reason+": "+e.Message)
	}
	return out
}

// EventCount counts the events of namespace ns with the given reason.
func EventCount(t testing.TB, c client.Client, ns, reason string) int {
	t.Helper()
	n := 0
	for _, e := range Events(t, c, ns) {
		if strings.HasPrefix(e, reason+": ") {
			n++
		}
	}
	return n
}

// Emulator is the STS emulator (hack/ststest) running as a process.
type Emulator struct {
	*cluster.Process
	URL string
}

// StartEmulator runs the ststest binary on addr (host:port, port 0 for any) with the given
// arguments (identities, time scale) and waits until it listens.
func StartEmulator(logDir, bin, addr string, args ...string) (*Emulator, error) {
	urlFile := filepath.Join(logDir, fmt.Sprintf("ststest-%d.url", time.Now().UnixNano()))
	p, err := cluster.StartProcess(logDir, "ststest", bin, nil, append([]string{"-addr", addr, "-url-file", urlFile}, args...)...)
	if err != nil {
		return nil, err
	}
	for i := 0; i < 100; i++ {
		if b, _ := os.ReadFile(urlFile); len(b) > 0 {
			return &Emulator{Process: p, URL: string(b)}, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.Stop()
	return nil, fmt.Errorf("the emulator did not start; log %s", p.Log)
}

// Control calls the emulator's control API (/_ststest/...) with body as JSON when not nil.
func (e *Emulator) Control(t testing.TB, method, path string, body any) []byte {
	t.Helper()
	var buf bytes.Buffer
	if body != nil {
		_ = json.NewEncoder(&buf).Encode(body)
	}
	req, _ := http.NewRequestWithContext(context.Background(), method, e.URL+path, &buf)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out bytes.Buffer
	_, _ = out.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, out.String())
	}
	return out.Bytes()
}

// InFlight is how many requests the emulator is answering now, delayed ones included.
func (e *Emulator) InFlight(t testing.TB) int {
	t.Helper()
	n, err := strconv.Atoi(string(e.Control(t, http.MethodGet, "/_ststest/in-flight", nil)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Calls are the calls the emulator recorded.
func (e *Emulator) Calls(t testing.TB) []ststest.Call {
	t.Helper()
	var out []ststest.Call
	if err := json.Unmarshal(e.Control(t, http.MethodGet, "/_ststest/calls", nil), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// CallsFor counts the calls for an AssumedRole, by its default session name, of one action ("" for
// any).
func CallsFor(all []ststest.Call, action, ns, name string) int {
	n := 0
	for _, c := range all {
		if c.SessionName == ns+"."+name && (action == "" || c.Action == action) {
			n++
		}
	}
	return n
}
