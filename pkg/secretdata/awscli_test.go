package secretdata_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// The rendered files, read by the AWS CLI (botocore, code nobody here wrote), authenticate: the
// config file through credential_process, and the shared credentials file with its profile.
func TestAWSCLIReadsRenderedFiles(t *testing.T) {
	bin, err := exec.LookPath("aws")
	if err != nil {
		t.Skip("the AWS CLI is not installed (Debian package awscli); .ci/run installs it")
	}
	op := ststest.Principal{AccessKeyID: "AKIAOPERATOR00000001", SecretAccessKey: "operator-secret", Arn: "arn:aws:iam::000000000000:user/rolekeeper"}
	srv := ststest.New(ststest.Options{Principals: []ststest.Principal{op}}).Start()
	defer srv.Close()
	c := sts.New(aws.Config{Region: "eu-west-1", Credentials: credentials.NewStaticCredentialsProvider(op.AccessKeyID, op.SecretAccessKey, "")}, sts.Options{Endpoint: srv.URL})
	res, err := c.AssumeRole(context.Background(), sts.AssumeRoleRequest{RoleArn: "arn:aws:iam::111122223333:role/reader", SessionName: "cli-reader", DurationSeconds: 900}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	data := secretdata.Render(secretdata.Input{
		AccessKeyID: res.Credentials.AccessKeyID, SecretAccessKey: res.Credentials.SecretAccessKey, SessionToken: res.Credentials.SessionToken,
		Expiration: res.Credentials.Expiration, Region: "eu-west-1", Profile: "reader", CredentialProcessMountPath: dir,
	})
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(dir, k), v, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(env ...string) string {
		t.Helper()
		home := t.TempDir()
		cmd := exec.Command(bin, "sts", "get-caller-identity", "--profile", "reader", "--endpoint-url", srv.URL, "--output", "json")
		cmd.Env = append([]string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "PYENV_ROOT=" + os.Getenv("PYENV_ROOT"), "AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER="}, env...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("aws %v: %v\n%s", env, err, errb.String())
		}
		var id struct{ Arn string }
		if err := json.Unmarshal(out.Bytes(), &id); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		return id.Arn
	}
	want := "arn:aws:sts::111122223333:assumed-role/reader/cli-reader"
	if got := run("AWS_CONFIG_FILE="+filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "absent")); got != want {
		t.Errorf("through credential_process the CLI is %s, want %s", got, want)
	}
	if got := run("AWS_CONFIG_FILE="+filepath.Join(dir, "absent"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "credentials"),
		// As envFrom would set them: the CLI reads the region only from AWS_DEFAULT_REGION.
		"AWS_REGION="+string(data["AWS_REGION"]), "AWS_DEFAULT_REGION="+string(data["AWS_DEFAULT_REGION"])); got != want {
		t.Errorf("through the credentials file the CLI is %s, want %s", got, want)
	}
}
