package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFlagValidation(t *testing.T) {
	cases := []struct {
		args []string
		want string // "" when valid
	}{
		{nil, ""},
		{[]string{"--region=eu-west-1", "--watch-namespaces=a, b,,c", "--leader-elect"}, ""},
		{[]string{"--region=useast1"}, `--region "useast1" is not an AWS region code`},
		{[]string{"--sts-qps=0"}, "--sts-qps must be positive"},
		{[]string{"--sts-burst=0"}, "--sts-burst must be at least 1"},
		{[]string{"--max-concurrent-reconciles=0"}, "--max-concurrent-reconciles must be at least 1"},
		{[]string{"--sts-endpoint=sts.example.com"}, "--sts-endpoint must be a URL"},
		{[]string{"--ecr-endpoint=api.ecr.example.com"}, "--ecr-endpoint must be a URL"},
		{[]string{"--leader-elect", "--leader-election-renew-deadline=20s"}, "leader election needs"},
		{[]string{"--leader-elect=false", "--leader-election-renew-deadline=20s"}, ""},
		{[]string{"--no-such-flag"}, "flag provided but not defined"},
		{[]string{"--webhook-port=9443"}, "--sidecar-image is required"},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("rolekeeper", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f, err := parseFlags(fs, c.args)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%v: %v", c.args, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		case c.want == "" && len(c.args) > 1 && strings.HasPrefix(c.args[1], "--watch-namespaces") && strings.Join(f.namespaces(), "|") != "a|b|c":
			t.Errorf("namespaces %v", f.namespaces())
		}
	}
}

// TestClientConfigAsksForUncompressedResponses: the operator's API client turns gzip off, so
// the API server does not compress each watch event for it (see clientConfig).
func TestClientConfigAsksForUncompressedResponses(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	doc := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`
	if err := os.WriteFile(kubeconfig, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", kubeconfig)
	cfg, err := clientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" || !cfg.DisableCompression {
		t.Errorf("client config host %q, DisableCompression %v; want the kubeconfig's server, true", cfg.Host, cfg.DisableCompression)
	}
}

// TestProfilingIsOffByDefault: the unauthenticated profiling endpoints serve only when asked.
func TestProfilingIsOffByDefault(t *testing.T) {
	for args, want := range map[string]string{"": "0", "--pprof-bind-address=127.0.0.1:8082": "127.0.0.1:8082"} {
		fs := flag.NewFlagSet("rolekeeper", flag.ContinueOnError)
		f, err := parseFlags(fs, strings.Fields(args))
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if f.pprofBindAddress != want {
			t.Errorf("%q: pprof address %q, want %q", args, f.pprofBindAddress, want)
		}
	}
}

// The Go memory limit is 80% of the container's when the chart passes it, and an explicit
// GOMEMLIMIT wins.
func TestSoftMemoryLimit(t *testing.T) {
	cases := []struct {
		gomemlimit, container string
		want                  int64
		set                   bool
	}{
		{"", "268435456", 214748364, true},
		{"", "", 0, false},
		{"200MiB", "268435456", 0, false},
		{"", "not-a-number", 0, false},
		{"", "0", 0, false},
	}
	for _, c := range cases {
		got, set := softMemoryLimit(c.gomemlimit, c.container)
		if got != c.want || set != c.set {
			t.Errorf("softMemoryLimit(%q, %q) = %d, %v; want %d, %v", c.gomemlimit, c.container, got, set, c.want, c.set)
		}
	}
}
