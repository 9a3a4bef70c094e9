// Package credserver is the credentials sidecar (`rolekeeper serve-credentials`): it serves the
// credentials in a mounted rolekeeper Secret over the AWS container credentials protocol on
// loopback, so that every AWS SDK in the pod (AWS_CONTAINER_CREDENTIALS_FULL_URI and
// AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE) refreshes them by itself as the operator rotates them.
//
// The package imports nothing of Kubernetes or the AWS SDK: a sidecar runs in every opted-in pod,
// so it stays small.
package credserver

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
)

// Paths served.
const (
	// CredentialsPath answers GET with the credentials, given the token in Authorization.
	CredentialsPath = "/v1/credentials"
	// HealthPath answers GET with 200 once the server listens; it reveals nothing.
	HealthPath = "/healthz"
)

// maxFileSize bounds what is read of each Secret key (a whole Secret is at most 1 MiB).
const maxFileSize = 64 << 10

// dataLink is the symlink the kubelet swaps atomically to update a Secret volume.
const dataLink = "..data"

// Options configure a Server.
type Options struct {
	// Dir is the mounted Secret volume.
	Dir string
	// Token is the value the Authorization header must carry.
	Token string
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// Log receives state changes only (never a credential or the token). Default: discard.
	Log *slog.Logger
}

// Server is the credentials endpoint, an http.Handler.
type Server struct {
	opts Options
	// cached is the last snapshot read, keyed by the target of the ..data link. The kubelet
	// never changes the files of a data directory after the swap, so a snapshot is valid
	// exactly as long as the link points to the same directory.
	cached atomic.Pointer[snapshot]
	// lastState is the last state logged ("" before the first request), so that a state is
	// logged when it changes and not on every request.
	mu        sync.Mutex
	lastState string
}

type snapshot struct {
	target string
	creds  secretdata.Input
	// err says why no credentials can be served from this snapshot.
	err error
}

// New returns a Server for opts.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Server{opts: opts}
}

// response is the container credentials document.
type response struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Token           string `json:"Token"`
	Expiration      string `json:"Expiration"`
}

// errorResponse is the error document; the SDKs show code and message.
type errorResponse struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, errorResponse{Code: code, Message: "rolekeeper credentials sidecar: " + message})
}

// ServeHTTP answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case HealthPath:
		_, _ = io.WriteString(w, "ok\n")
		return
	case CredentialsPath:
	default:
		writeError(w, http.StatusNotFound, "NotFound", "the credentials are served on "+CredentialsPath)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "only GET is supported")
		return
	}
	switch auth := r.Header.Get("Authorization"); {
	case auth == "":
		writeError(w, http.StatusUnauthorized, "Unauthorized", "the Authorization header is missing: set AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
		return
	case subtle.ConstantTimeCompare([]byte(auth), []byte(s.opts.Token)) != 1:
		writeError(w, http.StatusForbidden, "Forbidden", "the Authorization header does not hold this pod's token")
		return
	}
	snap := s.load()
	if snap.err != nil {
		s.logState("unavailable", snap.err.Error())
		writeError(w, http.StatusServiceUnavailable, "CredentialsUnavailable", snap.err.Error())
		return
	}
	now := s.opts.Now()
	served, ok := ServedExpiration(now, snap.creds.Expiration)
	if !ok {
		msg := fmt.Sprintf("the credentials in %s expired at %s and have not been rotated: see the Ready condition of the AssumedRole", s.opts.Dir, snap.creds.Expiration.UTC().Format(time.RFC3339))
		s.logState("expired", msg)
		writeError(w, http.StatusServiceUnavailable, "CredentialsExpired", msg)
		return
	}
	s.logState("serving", "")
	writeJSON(w, http.StatusOK, response{
		AccessKeyID:     snap.creds.AccessKeyID,
		SecretAccessKey: snap.creds.SecretAccessKey,
		Token:           snap.creds.SessionToken,
		Expiration:      served.Format(time.RFC3339),
	})
}

// logState logs when the state changes; the messages hold paths and times, never credentials.
func (s *Server) logState(state, msg string) {
	s.mu.Lock()
	changed := s.lastState != state
	s.lastState = state
	s.mu.Unlock()
	if !changed {
		return
	}
	if state == "serving" {
		s.opts.Log.Info("serving credentials", "dir", s.opts.Dir)
		return
	}
	s.opts.Log.Warn("not serving credentials", "reason", msg)
}

// load returns the credentials in the volume as of now. With a kubelet volume it resolves the
// ..data link once and reads every key from that one directory, so a read never mixes two
// versions; if the kubelet removes the directory mid-read (after swapping in a new one) it
// reads again from the new one.
func (s *Server) load() *snapshot {
	for range 4 {
		target, err := os.Readlink(filepath.Join(s.opts.Dir, dataLink))
		if errors.Is(err, os.ErrNotExist) {
			// Not a kubelet volume (or not populated yet): read the files themselves, uncached.
			return read(s.opts.Dir, "")
		}
		if err != nil {
			return &snapshot{err: fmt.Errorf("reading %s: %w", s.opts.Dir, err)}
		}
		if c := s.cached.Load(); c != nil && c.target == target {
			return c
		}
		snap := read(s.opts.Dir, target)
		if snap.err != nil && errors.Is(snap.err, os.ErrNotExist) {
			if again, err := os.Readlink(filepath.Join(s.opts.Dir, dataLink)); err != nil || again != target {
				continue // swapped while reading: read the new version
			}
		}
		s.cached.Store(snap)
		return snap
	}
	return &snapshot{err: fmt.Errorf("%s changed on every read", s.opts.Dir)}
}

func read(dir, target string) *snapshot {
	base := dir
	if target != "" {
		base = filepath.Join(dir, target)
		if filepath.IsAbs(target) {
			base = target
		}
	}
	data := map[string][]byte{}
	for _, key := range []string{secretdata.KeyAccessKeyID, secretdata.KeySecretAccessKey, secretdata.KeySessionToken, secretdata.KeyCredentialExpiration} {
		b, err := readBounded(filepath.Join(base, key))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return &snapshot{target: target, err: fmt.Errorf("%s has no key %s yet (the operator has not written the Secret, or it is an image-pull Secret): %w", dir, key, os.ErrNotExist)}
			}
			return &snapshot{target: target, err: fmt.Errorf("reading %s from %s: %w", key, dir, err)}
		}
		data[key] = b
	}
	creds, ok := secretdata.Credentials(data)
	if !ok {
		return &snapshot{target: target, err: fmt.Errorf("%s does not hold complete credentials", dir)}
	}
	return &snapshot{target: target, creds: creds}
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	return b, nil
}
