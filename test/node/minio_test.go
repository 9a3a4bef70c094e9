//go:build node

package node

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
	"github.com/rolekeeper/rolekeeper/test/minio"
)

// With MinIO, an independent AssumeRole implementation, in the suite's namespace: the operator in
// its pod signs with a MinIO user at MinIO's STS, and consumer pods write to MinIO's S3 with the
// mounted Secret through credential_process. MinIO enforces the AssumedRole's session policy: the
// pod writes demo-bucket, and other-bucket, which the operator's own identity may write, is
// refused.
func TestMinIOFromPods(t *testing.T) {
	ctx := context.Background()
	m := minio.StartOn(t, nodeIP)
	user := ststest.Principal{AccessKeyID: "rolekeeper-node", SecretAccessKey: "rolekeeper-node-secret-key"}
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::demo-bucket","arn:aws:s3:::demo-bucket/*","arn:aws:s3:::other-bucket","arn:aws:s3:::other-bucket/*"]}]}`
	if err := m.AddUser(ctx, user.AccessKeyID, user.SecretAccessKey, policy); err != nil {
		t.Fatal(err)
	}
	if err := m.MakeBuckets(ctx, "demo-bucket", "other-bucket"); err != nil {
		t.Fatal(err)
	}

	// A release of its own that watches only the test's namespace; the shared one, which
	// watches all, makes way.
	if out, err := runErr(os.Getenv("HELM_BIN"), "status", releaseName, "-n", operatorNamespace); err == nil && strings.Contains(out, "STATUS: deployed") {
		helmUninstall(t)
	}
	const release, ns = "rolekeeper-minio", "minio"
	operatorIdentitySecret(t, release, user)
	// The chart grants its rights by Roles in the watched namespace, so that exists first.
	apply(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: "+ns+"}\n")
	helm(t, "install", release, "charts/rolekeeper", "-n", release, "--set", "image.tag="+operatorTag, "-f", helmValues(t, m.URL),
		"--set", "replicaCount=1", "--set", "operator.watchNamespaces={"+ns+"}", "--wait", "--timeout", "3m")
	t.Cleanup(func() { _, _ = runErr(os.Getenv("HELM_BIN"), "uninstall", release, "-n", release, "--wait") })
	namespace(t, ns)

	apply(t, fmt.Sprintf(`apiVersion: rolekeeper.io/v1alpha1
kind: AssumedRole
metadata: {name: reader, namespace: %s}
spec:
  assumeRole:
    roleArn: arn:aws:iam::111122223333:role/reader
    policy: '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:PutObject"],"Resource":["arn:aws:s3:::demo-bucket/*"]}]}'
  secret: {credentialProcess: {mountPath: %s}}
`, ns, credsMount))
	waitReady(t, ns, "reader", 2*time.Minute)
	for _, b := range []string{"demo-bucket", "other-bucket"} {
		apply(t, consumerPod(ns, b, consumerImage, "reader", "S3_BUCKET="+b, "AWS_ENDPOINT_URL_S3="+m.URL, "INTERVAL=2s"))
	}
	for _, c := range []struct{ pod, want string }{{"demo-bucket", "ok s3://demo-bucket/from-pod.txt"}, {"other-bucket", "AccessDenied"}} {
		waitPodRunning(t, ns, c.pod)
		var log string
		eventually(t, time.Minute, c.pod+" logging "+c.want, func() bool {
			log = podLog(t, ns, c.pod)
			return strings.Contains(log, c.want)
		})
		if c.pod == "other-bucket" && strings.Contains(log, "ok ") {
			t.Errorf("a write outside the session policy succeeded:\n%s", tail(log, 5))
		}
	}
	if code, _, _ := m.S3(ctx, m.Root(), http.MethodGet, "/demo-bucket/from-pod.txt", nil); code != http.StatusOK {
		t.Errorf("the pod's object is not in demo-bucket (%d)", code)
	}
	own := aws.Credentials{AccessKeyID: user.AccessKeyID, SecretAccessKey: user.SecretAccessKey}
	if code, _, _ := m.S3(ctx, own, http.MethodPut, "/other-bucket/as-user.txt", []byte("x")); code != http.StatusOK {
		t.Errorf("the operator's own identity cannot write other-bucket (%d): the refusal above proves nothing", code)
	}
}
