package sts_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/test/minio"
)

// pkg/sts against MinIO, an STS AssumeRole implementation nobody here wrote: the credentials it
// issues work on MinIO's S3 API, and the inline session policy restricts them.
func TestMinIOAssumeRoleConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MinIO")
	}
	m := minio.Start(t)
	ctx := context.Background()
	root := m.Root()
	for _, bucket := range []string{"/allowed", "/denied"} {
		if code, body, err := m.S3(ctx, root, http.MethodPut, bucket, nil); err != nil || code != http.StatusOK {
			t.Fatalf("creating bucket %s: %d %s %v", bucket, code, body, err)
		}
	}
	c := sts.New(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(root.AccessKeyID, root.SecretAccessKey, "")},
		sts.Options{Endpoint: m.URL, MaxAttempts: 1})

	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:PutObject","s3:GetObject"],"Resource":["arn:aws:s3:::allowed/*"]}]}`
	before := time.Now()
	res, err := c.AssumeRole(ctx, sts.AssumeRoleRequest{
		RoleArn: "arn:aws:iam::111122223333:role/ignored-by-minio", SessionName: "conformance", DurationSeconds: 900, Policy: policy,
	}, nil)
	if err != nil {
		t.Fatalf("AssumeRole at MinIO: %v", err)
	}
	if lifetime := res.Credentials.Expiration.Sub(before); lifetime < 890*time.Second || lifetime > 910*time.Second {
		t.Errorf("MinIO granted %v, want 900 s", lifetime)
	}
	creds := aws.Credentials{AccessKeyID: res.Credentials.AccessKeyID, SecretAccessKey: res.Credentials.SecretAccessKey, SessionToken: res.Credentials.SessionToken}

	if code, body, err := m.S3(ctx, creds, http.MethodPut, "/allowed/hello.txt", []byte("hello")); err != nil || code != http.StatusOK {
		t.Fatalf("write allowed by the session policy: %d %s %v", code, body, err)
	}
	if code, body, err := m.S3(ctx, creds, http.MethodGet, "/allowed/hello.txt", nil); err != nil || code != http.StatusOK || string(body) != "hello" {
		t.Fatalf("read back: %d %q %v", code, body, err)
	}
	code, body, err := m.S3(ctx, creds, http.MethodPut, "/denied/hello.txt", []byte("hello"))
	if err != nil || code != http.StatusForbidden || !strings.Contains(string(body), "AccessDenied") {
		t.Fatalf("write outside the session policy: %d %s %v; want 403 AccessDenied", code, body, err)
	}
	// Root itself may write there: the refusal came from the session policy.
	if code, _, _ := m.S3(ctx, root, http.MethodPut, "/denied/hello.txt", []byte("hello")); code != http.StatusOK {
		t.Fatalf("root write to /denied: %d", code)
	}

	// MinIO's own error codes are classified: a bad signature is terminal.
	wrong := sts.New(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(root.AccessKeyID, "wrong-secret", "")}, sts.Options{Endpoint: m.URL, MaxAttempts: 1})
	_, err = wrong.AssumeRole(ctx, sts.AssumeRoleRequest{RoleArn: "arn:aws:iam::111122223333:role/x", SessionName: "conformance", DurationSeconds: 900}, nil)
	if err == nil || sts.IsRetryable(err) || sts.Code(err) == "" {
		t.Errorf("wrong secret at MinIO: %v; want a terminal coded error", err)
	}
	if strings.Contains(err.Error(), "wrong-secret") {
		t.Errorf("error carries the secret: %v", err)
	}
}
