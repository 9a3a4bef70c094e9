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
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

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

// Start runs MinIO with a fresh data directory until the test ends, with env added to its
// environment (for example MINIO_IDENTITY_OPENID_* settings). Its log is printed when the test
// fails.
func Start(t testing.TB, env ...string) *Server {
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
	port, console := cluster.FreePort(), cluster.FreePort()
	s.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
	cmd := exec.CommandContext(context.Background(), bin, "server", filepath.Join(dir, "data"), "--quiet", "--address", fmt.Sprintf("127.0.0.1:%d", port), "--console-address", fmt.Sprintf("127.0.0.1:%d", console))
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
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, s.URL+"/minio/health/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("MinIO did not become ready at %s", s.URL)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Root returns MinIO's root credentials.
func (s *Server) Root() aws.Credentials {
	return aws.Credentials{AccessKeyID: s.RootUser, SecretAccessKey: s.RootPassword}
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
