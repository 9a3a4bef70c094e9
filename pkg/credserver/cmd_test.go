package credserver

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rolekeeper/rolekeeper/test/atomicdir"
	"github.com/rolekeeper/rolekeeper/test/cluster"
	"github.com/rolekeeper/rolekeeper/test/harness"
)

func TestParseArgs(t *testing.T) {
	c, err := ParseArgs(nil, io.Discard)
	if err != nil || c.Port != DefaultPort || c.SecretDir != DefaultSecretDir || c.TokenFile != DefaultTokenFile || c.Probe {
		t.Fatalf("defaults %+v, %v", c, err)
	}
	for args, want := range map[string]string{
		"--port=0":     "--port must be 1-65535",
		"--port=70000": "--port must be 1-65535",
		"extra":        "unexpected arguments",
		"--nope":       "flag provided but not defined",
	} {
		if _, err := ParseArgs(strings.Fields(args), io.Discard); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}

func TestTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	token, err := ensureToken(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != token || len(b) != tokenLen || bytes.ContainsAny(b, "\r\n \t") {
		t.Fatalf("token file %q (%v): want the token alone, no newline", b, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o444 {
		t.Errorf("token file mode %v, want read-only for every user of the pod", fi.Mode().Perm())
	}
	// A restarted sidecar keeps the pod's token; a damaged file gets a new one.
	if again, err := ensureToken(path); err != nil || again != token {
		t.Fatalf("restart: %q, %v", again, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fresh, err := ensureToken(path); err != nil || fresh == token || !validToken([]byte(fresh)) {
		t.Fatalf("damaged file: %q, %v", fresh, err)
	}
	other, _ := ensureToken(filepath.Join(t.TempDir(), "token"))
	if other == token {
		t.Fatal("two pods got the same token")
	}
}

// TestRunProbeAndLogs runs the sidecar as the subcommand does: the probe fails until it serves,
// and neither the probe's output nor the logs ever hold the token or a credential.
func TestRunProbeAndLogs(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Port: cluster.FreePort(), SecretDir: filepath.Join(dir, "secret"), TokenFile: filepath.Join(dir, "token")}
	if err := probe(cfg); err == nil {
		t.Fatal("probe succeeded before the sidecar started")
	}
	var logs harness.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)), func(addr string) { ready <- addr })
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	if err := probe(cfg); err != nil {
		t.Fatalf("probe of a serving sidecar: %v", err)
	}
	token, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	fetch := func(auth string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+CredentialsPath, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	if got := fetch(string(token)); got != http.StatusServiceUnavailable {
		t.Fatalf("before the Secret: %d", got)
	}
	data := creds(3, time.Now().Add(time.Hour))
	if err := atomicdir.Write(cfg.SecretDir, data); err != nil {
		t.Fatal(err)
	}
	for auth, want := range map[string]int{string(token): 200, "": 401, "guess": 403} {
		if got := fetch(auth); got != want {
			t.Errorf("Authorization %q: %d, want %d", auth, got, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if !strings.Contains(out, "serving credentials") || !strings.Contains(out, "not serving credentials") {
		t.Errorf("logs do not show the state changes:\n%s", out)
	}
	for _, secret := range []string{string(token), string(data["AWS_SECRET_ACCESS_KEY"]), string(data["AWS_SESSION_TOKEN"])} {
		if strings.Contains(out, secret) {
			t.Fatalf("the logs hold a secret:\n%s", out)
		}
	}
}
