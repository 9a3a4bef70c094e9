package credserver

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"github.com/rolekeeper/rolekeeper/pkg/memtrim"
)

// Defaults of the sidecar, shared with the injection (pkg/inject).
const (
	DefaultPort      = 8910
	DefaultSecretDir = "/var/run/secrets/rolekeeper.io/credentials"
	DefaultTokenFile = "/var/run/secrets/rolekeeper.io/token/token"
)

// Config is the command line of `rolekeeper serve-credentials`.
type Config struct {
	Port      int
	SecretDir string
	TokenFile string
	// Probe checks a running sidecar instead of starting one (the startup probe).
	Probe bool
}

// ParseArgs parses the subcommand's flags.
func ParseArgs(args []string, output io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("rolekeeper serve-credentials", flag.ContinueOnError)
	fs.SetOutput(output)
	fs.IntVar(&c.Port, "port", DefaultPort, "TCP port on 127.0.0.1 to serve on.")
	fs.StringVar(&c.SecretDir, "secret-dir", DefaultSecretDir, "Directory of the mounted rolekeeper Secret.")
	fs.StringVar(&c.TokenFile, "token-file", DefaultTokenFile, "File to write this pod's authorization token to (an in-memory volume shared with the app containers).")
	fs.BoolVar(&c.Probe, "probe", false, "Exit 0 if a sidecar with these flags is serving and has written its token, 1 otherwise.")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.Port < 1 || c.Port > 65535 {
		return c, fmt.Errorf("--port must be 1-65535, got %d", c.Port)
	}
	return c, nil
}

// Main runs the subcommand and returns the process exit code.
func Main(args []string) int {
	cfg, err := ParseArgs(args, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rolekeeper serve-credentials:", err)
		return 2
	}
	if cfg.Probe {
		if err := probe(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "rolekeeper serve-credentials: not ready:", err)
			return 1
		}
		return 0
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := Run(ctx, cfg, log, nil); err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	return 0
}

// Run writes the token file (keeping a token an earlier run of the sidecar in this pod wrote),
// serves until ctx is done, and calls ready (when not nil) once listening.
func Run(ctx context.Context, cfg Config, log *slog.Logger, ready func(addr string)) error {
	token, err := ensureToken(cfg.TokenFile)
	if err != nil {
		return err
	}
	l, err := (&net.ListenConfig{}).Listen(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port)))
	if err != nil {
		return err
	}
	// SDKs ask every few minutes. Once requests stop for TrimAfter, the pages that serving
	// brought back are dropped again (see trim), so that between polls the sidecar holds only
	// what it needs to answer the next one.
	handler := New(Options{Dir: cfg.SecretDir, Token: token, Log: log})
	idle := time.AfterFunc(TrimAfter, trim)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			idle.Reset(TrimAfter)
			handler.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelError),
	}
	log.Info("serving the AWS container credentials protocol", "url", "http://"+l.Addr().String()+CredentialsPath, "secretDir", cfg.SecretDir, "tokenFile", cfg.TokenFile)
	// What start-up allocated (flag parsing, package initialisation of the whole binary) is
	// garbage now; hand it back so the sidecar's resident size is what serving needs, and keep
	// the heap close to its live size (a few MiB): a request allocates little.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	trim()
	if ready != nil {
		ready(l.Addr().String())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return srv.Shutdown(shutdown)
	}
}

// TrimAfter is how long the sidecar waits after the last request before trimming its memory.
const TrimAfter = 10 * time.Second

// trim returns the free heap to the system, then drops the executable's clean pages from this
// process (memtrim.ReleaseCodePages): what the next request needs comes back on first use.
func trim() {
	debug.FreeOSMemory()
	memtrim.ReleaseCodePages()
}

// tokenLen is the length of a token: 32 random bytes, base64url without padding.
const tokenLen = 43

func validToken(b []byte) bool {
	if len(b) != tokenLen {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(string(b))
	return err == nil
}

// ensureToken returns the pod's token, writing a new one unless the file already holds one
// (the sidecar restarted; the volume lives as long as the pod). The file holds the token alone,
// with no trailing newline: botocore refuses a token with one.
func ensureToken(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil && validToken(b) {
		return string(b), nil
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token := base64.RawURLEncoding.EncodeToString(raw)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".token-")
	if err != nil {
		return "", fmt.Errorf("writing the token file: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.WriteString(token); err != nil {
		_ = tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o444); err != nil {
		_ = tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("writing the token file: %w", err)
	}
	return token, nil
}

// probe reports whether the token file is in place and the server answers on loopback. It
// never prints the token: probe output ends up in the pod's events.
func probe(cfg Config) error {
	b, err := os.ReadFile(cfg.TokenFile)
	if err != nil {
		return fmt.Errorf("no token file: %w", err)
	}
	if !validToken(b) {
		return fmt.Errorf("%s does not hold a token", cfg.TokenFile)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.Port))+HealthPath, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", HealthPath, resp.Status)
	}
	return nil
}
