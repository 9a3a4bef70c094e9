package credserver

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/test/atomicdir"
)

const testToken = "Qm9yZWQ_dG9rZW4tZm9yLXRlc3RzLW9ubHktMDAwMDA"

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func TestServedExpiration(t *testing.T) {
	cases := []struct {
		name string
		left time.Duration // real expiry - now
		want time.Duration // served - now; -1 for not served
	}{
		{"fresh 12h session: horizon", 12 * time.Hour, Horizon},
		{"fresh 1h session: horizon", time.Hour, Horizon},
		{"horizon plus margin left: both agree", Horizon + Margin, Horizon},
		{"less than horizon plus margin: real expiry minus margin", 15 * time.Minute, 13 * time.Minute},
		{"margin plus floor left", Margin + Floor, Floor},
		{"between floor and margin plus floor: floor", Margin + 30*time.Second, Floor},
		{"less than floor left: the real expiry", 45 * time.Second, 45 * time.Second},
		{"one second left", time.Second, time.Second},
		{"expired now", 0, -1},
		{"expired long ago", -time.Hour, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			served, ok := ServedExpiration(t0, t0.Add(c.left))
			if c.want < 0 {
				if ok {
					t.Fatalf("served %v for credentials that expired", served)
				}
				return
			}
			if !ok || served.Sub(t0) != c.want {
				t.Fatalf("served %v (ok %v), want now+%v", served.Sub(t0), ok, c.want)
			}
			if !served.After(t0) || served.After(t0.Add(c.left)) {
				t.Fatalf("served %v is not in (now, real expiry]", served)
			}
		})
	}
}

// TestServedExpirationNeverLaterThanMargin: for any lifetime left above Margin + Floor, the
// served Expiration is at least Margin before the real one, so an SDK that uses the credentials
// up to the served second (no refresh window at all) still has Margin to reach AWS.
func TestServedExpirationNeverLaterThanMargin(t *testing.T) {
	for left := Margin + Floor; left <= 13*time.Hour; left += 7 * time.Second {
		served, ok := ServedExpiration(t0, t0.Add(left))
		if !ok || t0.Add(left).Sub(served) < Margin || served.Sub(t0) < Floor {
			t.Fatalf("left %v: served now+%v", left, served.Sub(t0))
		}
	}
}

// creds renders Secret data for key n, whose secret and token carry the same n, so a reader can
// tell a torn read.
func creds(n int, exp time.Time) map[string][]byte {
	return secretdata.Render(secretdata.Input{
		AccessKeyID:     fmt.Sprintf("ASIATEST%012d", n),
		SecretAccessKey: fmt.Sprintf("secret-%d", n),
		SessionToken:    fmt.Sprintf("session-token-%d", n),
		Expiration:      exp,
		Region:          "eu-west-1",
	})
}

type served struct {
	status int
	body   []byte
	doc    response
	err    errorResponse
}

func get(t testing.TB, h http.Handler, path, auth string) served {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	out := served{status: rec.Code, body: rec.Body.Bytes()}
	if rec.Code == http.StatusOK && path == CredentialsPath {
		if err := json.Unmarshal(out.body, &out.doc); err != nil {
			t.Fatalf("200 with a body that is not the credentials document: %v", err)
		}
	} else if path == CredentialsPath {
		if err := json.Unmarshal(out.body, &out.err); err != nil || out.err.Code == "" {
			t.Fatalf("%d with a body that is not an error document: %s", rec.Code, out.body)
		}
	}
	return out
}

func newServer(t *testing.T, dir string, now func() time.Time, log *slog.Logger) *Server {
	t.Helper()
	return New(Options{Dir: dir, Token: testToken, Now: now, Log: log})
}

func TestAuthorization(t *testing.T) {
	dir := t.TempDir()
	if err := atomicdir.Write(dir, creds(1, t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, dir, func() time.Time { return t0 }, nil)
	cases := []struct {
		name, method, path, auth string
		want                     int
	}{
		{"right token", http.MethodGet, CredentialsPath, testToken, http.StatusOK},
		{"missing token", http.MethodGet, CredentialsPath, "", http.StatusUnauthorized},
		{"wrong token", http.MethodGet, CredentialsPath, "not-the-token", http.StatusForbidden},
		{"token with a prefix", http.MethodGet, CredentialsPath, "Bearer " + testToken, http.StatusForbidden},
		{"token prefix only", http.MethodGet, CredentialsPath, testToken[:20], http.StatusForbidden},
		{"POST", http.MethodPost, CredentialsPath, testToken, http.StatusMethodNotAllowed},
		{"other path", http.MethodGet, "/latest/meta-data/", testToken, http.StatusNotFound},
		{"health needs no token", http.MethodGet, HealthPath, "", http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(c.method, c.path, nil)
			if c.auth != "" {
				req.Header.Set("Authorization", c.auth)
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			if rec.Code != c.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, c.want, rec.Body)
			}
			body := rec.Body.String()
			if c.want != http.StatusOK && (strings.Contains(body, testToken[:20]) || strings.Contains(body, "secret-1") || strings.Contains(body, "session-token-1")) {
				t.Fatalf("refusal reveals the token or credentials: %s", body)
			}
		})
	}
	got := get(t, s, CredentialsPath, testToken)
	if got.doc.AccessKeyID != "ASIATEST000000000001" || got.doc.SecretAccessKey != "secret-1" || got.doc.Token != "session-token-1" || got.doc.Expiration != t0.Add(Horizon).Format(time.RFC3339) {
		t.Fatalf("served %+v", got.doc)
	}
}

// TestKubeletSwap: each update, done as the kubelet's atomic writer does it, is served from the
// next request on; nothing is cached past a change.
func TestKubeletSwap(t *testing.T) {
	dir := t.TempDir()
	s := newServer(t, dir, func() time.Time { return t0 }, nil)
	for n := 1; n <= 3; n++ {
		if err := atomicdir.Write(dir, creds(n, t0.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		for range 2 { // the second answer comes from the cache of this version
			if got := get(t, s, CredentialsPath, testToken); got.doc.SecretAccessKey != fmt.Sprintf("secret-%d", n) {
				t.Fatalf("after update %d served %q (%d %s)", n, got.doc.AccessKeyID, got.status, got.body)
			}
		}
	}
}

// TestKubeletSwapUnderLoad: readers racing many kubelet-style swaps never see a mix of two
// versions and never see the Secret missing.
func TestKubeletSwapUnderLoad(t *testing.T) {
	dir := t.TempDir()
	if err := atomicdir.Write(dir, creds(0, t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, dir, func() time.Time { return t0 }, nil)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var reads, versions atomic.Int64
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				got := get(t, s, CredentialsPath, testToken)
				var n int
				if got.status != http.StatusOK {
					t.Errorf("during swaps: %d %s", got.status, got.body)
					return
				}
				if _, err := fmt.Sscanf(got.doc.SecretAccessKey, "secret-%d", &n); err != nil ||
					got.doc.AccessKeyID != fmt.Sprintf("ASIATEST%012d", n) || got.doc.Token != fmt.Sprintf("session-token-%d", n) {
					t.Errorf("torn read: %q %q %q", got.doc.AccessKeyID, got.doc.SecretAccessKey, got.doc.Token)
					return
				}
				reads.Add(1)
			}
		})
	}
	for n := 1; n <= 300 && !t.Failed(); n++ {
		if err := atomicdir.Write(dir, creds(n, t0.Add(time.Hour))); err != nil {
			t.Fatal(err)
		}
		versions.Add(1)
	}
	stop.Store(true)
	wg.Wait()
	if reads.Load() == 0 || versions.Load() != 300 {
		t.Fatalf("%d reads over %d versions", reads.Load(), versions.Load())
	}
}

// TestSecretBrieflyMissing: while the volume is empty the answer is an error (never the last
// credentials from memory), and the next version is served as soon as it is there.
func TestSecretBrieflyMissing(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	s := newServer(t, dir, func() time.Time { return t0 }, slog.New(slog.NewTextHandler(&logs, nil)))
	if got := get(t, s, CredentialsPath, testToken); got.status != http.StatusServiceUnavailable || got.err.Code != "CredentialsUnavailable" {
		t.Fatalf("before the first write: %d %s", got.status, got.body)
	}
	if err := atomicdir.Write(dir, creds(1, t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, CredentialsPath, testToken); got.doc.SecretAccessKey != "secret-1" {
		t.Fatalf("after the first write: %d %s", got.status, got.body)
	}
	if err := atomicdir.Clear(dir); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, CredentialsPath, testToken); got.status != http.StatusServiceUnavailable || got.err.Code != "CredentialsUnavailable" {
		t.Fatalf("while missing: %d %s", got.status, got.body)
	}
	if err := atomicdir.Write(dir, creds(2, t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, CredentialsPath, testToken); got.doc.SecretAccessKey != "secret-2" {
		t.Fatalf("after it came back: %d %s", got.status, got.body)
	}
	// Keys missing from a populated volume (an image-pull Secret, someone else's Secret).
	if err := atomicdir.Write(dir, map[string][]byte{".dockerconfigjson": []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, CredentialsPath, testToken); got.status != http.StatusServiceUnavailable || !strings.Contains(got.err.Message, "AWS_ACCESS_KEY_ID") {
		t.Fatalf("without credential keys: %d %s", got.status, got.body)
	}
	// Each state is logged once, not once per request.
	if n := strings.Count(logs.String(), "not serving credentials"); n != 3 {
		t.Errorf("logged %d state changes to not serving, want 3:\n%s", n, logs.String())
	}
}

// TestExpiredNeverServed: credentials past their real expiry are refused with an error status,
// and served again once rotated ones arrive.
func TestExpiredNeverServed(t *testing.T) {
	dir := t.TempDir()
	now := t0
	s := newServer(t, dir, func() time.Time { return now }, nil)
	if err := atomicdir.Write(dir, creds(1, t0.Add(90*time.Second))); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, CredentialsPath, testToken); got.doc.Expiration != t0.Add(Floor).Format(time.RFC3339) {
		t.Fatalf("90 s before expiry: %s", got.body)
	}
	now = t0.Add(90 * time.Second)
	got := get(t, s, CredentialsPath, testToken)
	if got.status != http.StatusServiceUnavailable || got.err.Code != "CredentialsExpired" || !strings.Contains(got.err.Message, "AssumedRole") {
		t.Fatalf("at expiry: %d %s", got.status, got.body)
	}
	if err := atomicdir.Write(dir, creds(2, now.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, CredentialsPath, testToken); got.doc.SecretAccessKey != "secret-2" {
		t.Fatalf("after rotation: %s", got.body)
	}
}

// TestPlainDirectory: a directory that is not a kubelet volume is read on every request.
func TestPlainDirectory(t *testing.T) {
	dir := t.TempDir()
	s := newServer(t, dir, func() time.Time { return t0 }, nil)
	for n := 1; n <= 2; n++ {
		for k, v := range creds(n, t0.Add(time.Hour)) {
			if err := os.WriteFile(filepath.Join(dir, k), v, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got := get(t, s, CredentialsPath, testToken); got.doc.SecretAccessKey != fmt.Sprintf("secret-%d", n) {
			t.Fatalf("version %d: %s", n, got.body)
		}
	}
}

// FuzzAuthorization: whatever the method, path and Authorization header, the credentials are
// served only for a GET of CredentialsPath carrying exactly the token, and no answer repeats
// the header it was sent.
func FuzzAuthorization(f *testing.F) {
	f.Add("GET", CredentialsPath, testToken)
	f.Add("GET", CredentialsPath, testToken+"\x00")
	f.Add("GET", "/v1/credentials/../v1/credentials", testToken)
	f.Add("HEAD", CredentialsPath, "Basic "+testToken)
	dir := f.TempDir()
	if err := atomicdir.Write(dir, creds(7, t0.Add(time.Hour))); err != nil {
		f.Fatal(err)
	}
	s := New(Options{Dir: dir, Token: testToken, Now: func() time.Time { return t0 }})
	f.Fuzz(func(t *testing.T, method, path, auth string) {
		req, err := http.NewRequest(method, "http://127.0.0.1"+path, nil)
		if err != nil {
			return
		}
		req.Header["Authorization"] = []string{auth}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		ok := method == http.MethodGet && req.URL.Path == CredentialsPath && auth == testToken
		if (rec.Code == http.StatusOK && req.URL.Path == CredentialsPath) != ok {
			t.Fatalf("%s %q with %q: %d", method, path, auth, rec.Code)
		}
		if len(auth) > 8 && auth != testToken && strings.Contains(rec.Body.String(), auth) {
			t.Fatalf("the answer repeats the Authorization header")
		}
	})
}
