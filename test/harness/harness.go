// Package harness holds what the end-to-end suites (test/e2e, test/node) share beyond the
// processes of test/cluster: waiting for a condition, reading AssumedRoles and Secrets, and the
// STS emulator process with its control API.
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	rkv1 "github.com/rolekeeper/rolekeeper/api/v1alpha1"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	"github.com/rolekeeper/rolekeeper/test/cluster"
)

// Eventually polls cond every 250 ms and fails the test when it does not hold within timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
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

// AssumedRole reads an AssumedRole and fails the test when it cannot.
func AssumedRole(t testing.TB, c client.Client, ns, name string) *rkv1.AssumedRole {
	t.Helper()
	ar := &rkv1.AssumedRole{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ar); err != nil {
		t.Fatal(err)
	}
	return ar
}

// Secret returns the Secret, or nil when it cannot be read.
func Secret(c client.Client, ns, name string) *corev1.Secret {
	s := &corev1.Secret{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		return nil
	}
	return s
}

// WaitReady waits until the AssumedRole exists and is Ready for its current generation.
func WaitReady(t testing.TB, c client.Client, ns, name string, timeout time.Duration) *rkv1.AssumedRole {
	t.Helper()
	ar := &rkv1.AssumedRole{}
	Eventually(t, timeout, ns+"/"+name+" Ready", func() bool {
		if c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ar) != nil {
			return false
		}
		cond := meta.FindStatusCondition(ar.Status.Conditions, rkv1.ConditionReady)
		return cond != nil && cond.Status == metav1.ConditionTrue && cond.ObservedGeneration == ar.Generation
	})
	return ar
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
