// Package minio runs MinIO (built by hack/build-minio.sh) on 127.0.0.1 as an independent STS
// AssumeRole peer for tests, and signs plain S3 calls against it.
package minio

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/minio/madmin-go/v3"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/rolekeeper/rolekeeper/test/cluster"
	"github.com/rolekeeper/rolekeeper/test/testenv"
)

// Server is a running MinIO.
type Server struct {
	URL          string
	RootUser     string
	RootPassword string
	Log          string
}

// Binary returns the MinIO binary: $MINIO_BIN, or the newest build under bin/minio-*.
func Binary() (string, error) {
	if b := os.Getenv("MINIO_BIN"); b != "" {
		return b, nil
	}
	found, _ := filepath.Glob(filepath.Join(testenv.Root(), "bin", "minio-*", "minio"))
	sort.Strings(found)
	if len(found) == 0 {
		return "", fmt.Errorf("no MinIO binary: run `make minio` (hack/build-minio.sh) or set MINIO_BIN")
	}
	return found[len(found)-1], nil
}

// Start runs MinIO on 127.0.0.1 with a fresh data directory until the test ends, with env added
// to its environment (for example MINIO_IDENTITY_OPENID_* settings). Its log is printed when the
// test fails.
func Start(t testing.TB, env ...string) *Server { return StartOn(t, "127.0.0.1", env...) }

// StartOn is Start listening on host (an address of a network namespace the test made, where
// pods reach it).
func StartOn(t testing.TB, host string, env ...string) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &Server{RootUser: "rolekeeper-root", RootPassword: "rolekeeper-root-password", Log: filepath.Join(dir, "minio.log")}
	logFile, err := os.Create(s.Log)
	if err != nil {
		t.Fatal(err)
	}
	ports := cluster.FreePorts(2)
	port, console := ports[0], ports[1]
	s.URL = fmt.Sprintf("http://%s:%d", host, port)
	cmd := exec.CommandContext(context.Background(), bin, "server", filepath.Join(dir, "data"), "--quiet", "--address", fmt.Sprintf("%s:%d", host, port), "--console-address", fmt.Sprintf("%s:%d", host, console))
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+s.RootUser, "MINIO_ROOT_PASSWORD="+s.RootPassword, "MINIO_BROWSER=off", "MINIO_UPDATE=off")
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		_ = logFile.Close()
		if t.Failed() {
			out, _ := os.ReadFile(s.Log)
			t.Logf("MinIO log:\n%s", out)
		}
	})
	// Ready answers before the object layer is up (S3 calls then get XMinioServerNotInitialized);
	// the cluster check answers 200 only once it can take writes.
	deadline := time.Now().Add(60 * time.Second)
	for _, check := range []string{"/minio/health/ready", "/minio/health/cluster"} {
		for !s.healthy(check) {
			if time.Now().After(deadline) {
				t.Fatalf("MinIO at %s did not pass %s", s.URL, check)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return s
}

func (s *Server) healthy(path string) bool {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, s.URL+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Root returns MinIO's root credentials.
func (s *Server) Root() aws.Credentials {
	return aws.Credentials{AccessKeyID: s.RootUser, SecretAccessKey: s.RootPassword}
}

// AddUser creates an IAM user of MinIO with an identity policy (JSON) of the same name, through
// MinIO's admin API.
func (s *Server) AddUser(ctx context.Context, user, secret, policy string) error {
	adm, err := madmin.NewWithOptions(strings.TrimPrefix(s.URL, "http://"), &madmin.Options{Creds: credentials.NewStaticV4(s.RootUser, s.RootPassword, "")})
	if err != nil {
		return err
	}
	if err := adm.AddUser(ctx, user, secret); err != nil {
		return err
	}
	if err := adm.AddCannedPolicy(ctx, user, []byte(policy)); err != nil {
		return err
	}
	_, err = adm.AttachPolicy(ctx, madmin.PolicyAssociationReq{Policies: []string{user}, User: user})
	return err
}

// MakeBuckets creates buckets as the root user.
func (s *Server) MakeBuckets(ctx context.Context, names ...string) error {
	for _, b := range names {
		if code, body, err := s.S3(ctx, s.Root(), http.MethodPut, "/"+b, nil); err != nil || code != http.StatusOK {
			return fmt.Errorf("bucket %s: %d %s %w", b, code, body, err)
		}
	}
	return nil
}

// S3 sends one S3 request signed with creds and returns the status code and body.
func (s *Server) S3(ctx context.Context, creds aws.Credentials, method, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, s.URL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Content-Sha256", hash)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hash, "s3", "us-east-1", time.Now()); err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}
