package ststest_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

var operator = ststest.Principal{
	AccessKeyID:     "AKIAOPERATOR00000001",
	SecretAccessKey: "operatorSecretKey0000000000000000000000001",
	Arn:             "arn:aws:iam::000000000000:user/rolekeeper",
}

// awsCLI runs the AWS CLI against the emulator with only the given credentials: no config file,
// no credentials file, no instance metadata.
func awsCLI(t *testing.T, endpoint string, creds map[string]string, args ...string) ([]byte, string, error) {
	t.Helper()
	bin, err := exec.LookPath("aws")
	if err != nil {
		t.Skip("the AWS CLI is not installed (Debian package awscli); .ci/run installs it")
	}
	home := t.TempDir()
	cmd := exec.Command(bin, append(args, "--endpoint-url", endpoint, "--region", "us-east-1", "--output", "json")...)
	cmd.Env = []string{
		"HOME=" + home, "PATH=" + os.Getenv("PATH"),
		"AWS_CONFIG_FILE=" + home + "/none", "AWS_SHARED_CREDENTIALS_FILE=" + home + "/none",
		"AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER=", "AWS_MAX_ATTEMPTS=1",
	}
	if pyenv := os.Getenv("PYENV_ROOT"); pyenv != "" {
		cmd.Env = append(cmd.Env, "PYENV_ROOT="+pyenv)
	}
	for k, v := range creds {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	return stdout.Bytes(), stderr.String(), err
}

func TestAWSCLIAgainstEmulator(t *testing.T) {
	srv := ststest.New(ststest.Options{Principals: []ststest.Principal{operator}}).Start()
	defer srv.Close()
	operatorEnv := map[string]string{"AWS_ACCESS_KEY_ID": operator.AccessKeyID, "AWS_SECRET_ACCESS_KEY": operator.SecretAccessKey}

	out, stderr, err := awsCLI(t, srv.URL, operatorEnv, "sts", "assume-role",
		"--role-arn", "arn:aws:iam::111122223333:role/reader",
		"--role-session-name", "cli-session",
		"--duration-seconds", "1800",
		"--external-id", "ext-1",
		"--source-identity", "ci-bot",
		"--policy", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}`,
		"--policy-arns", "arn=arn:aws:iam::aws:policy/ReadOnlyAccess",
		"--tags", "Key=kubernetes-namespace,Value=payments", "Key=team,Value=core",
		"--transitive-tag-keys", "kubernetes-namespace")
	if err != nil {
		t.Fatalf("aws sts assume-role: %v\n%s", err, stderr)
	}
	var assumed struct {
		Credentials struct {
			AccessKeyID     string `json:"AccessKeyId"`
			SecretAccessKey string
			SessionToken    string
			Expiration      string
		}
		AssumedRoleUser  struct{ Arn, AssumedRoleID string }
		PackedPolicySize int
		SourceIdentity   string
	}
	if err := json.Unmarshal(out, &assumed); err != nil {
		t.Fatalf("CLI output is not the AssumeRole JSON: %v\n%s", err, out)
	}
	c := assumed.Credentials
	if !strings.HasPrefix(c.AccessKeyID, "ASIA") || c.SecretAccessKey == "" || c.SessionToken == "" {
		t.Fatalf("credentials not parsed by the CLI: key id %q", c.AccessKeyID)
	}
	exp, err := time.Parse(time.RFC3339, strings.Replace(c.Expiration, "+00:00", "Z", 1))
	if err != nil || time.Until(exp) < 29*time.Minute || time.Until(exp) > 31*time.Minute {
		t.Errorf("expiration %q, want about 30 minutes from now", c.Expiration)
	}
	if assumed.AssumedRoleUser.Arn != "arn:aws:sts::111122223333:assumed-role/reader/cli-session" || assumed.SourceIdentity != "ci-bot" || assumed.PackedPolicySize == 0 {
		t.Errorf("CLI parsed %+v", assumed.AssumedRoleUser)
	}

	// The CLI's parameters arrived as sent.
	call := srv.Calls()[0]
	if call.DurationSeconds != 1800 || call.ExternalID != "ext-1" || call.SourceIdentity != "ci-bot" ||
		len(call.Tags) != 2 || call.Tags[1] != (ststest.Tag{Key: "team", Value: "core"}) ||
		len(call.PolicyArns) != 1 || call.PolicyArns[0] != "arn:aws:iam::aws:policy/ReadOnlyAccess" ||
		len(call.TransitiveTagKeys) != 1 || !strings.Contains(call.Policy, `"s3:*"`) {
		t.Errorf("emulator received %+v", call)
	}

	// The issued credentials, signed by the CLI, authenticate as the assumed role.
	out, stderr, err = awsCLI(t, srv.URL, map[string]string{
		"AWS_ACCESS_KEY_ID": c.AccessKeyID, "AWS_SECRET_ACCESS_KEY": c.SecretAccessKey, "AWS_SESSION_TOKEN": c.SessionToken,
	}, "sts", "get-caller-identity")
	if err != nil {
		t.Fatalf("aws sts get-caller-identity with issued credentials: %v\n%s", err, stderr)
	}
	var id struct{ Arn, Account, UserID string }
	if err := json.Unmarshal(out, &id); err != nil || id.Arn != assumed.AssumedRoleUser.Arn || id.Account != "111122223333" {
		t.Errorf("caller identity %s (%v)", out, err)
	}

	// An AWS error document is understood by the CLI.
	_, stderr, err = awsCLI(t, srv.URL, operatorEnv, "sts", "assume-role",
		"--role-arn", "arn:aws:iam::111122223333:role/reader", "--role-session-name", "cli-session", "--policy", "{not json")
	if err == nil || !strings.Contains(stderr, "MalformedPolicyDocument") {
		t.Errorf("malformed policy through the CLI: err %v, stderr %q", err, stderr)
	}
	// A wrong secret fails the signature check.
	_, stderr, err = awsCLI(t, srv.URL, map[string]string{"AWS_ACCESS_KEY_ID": operator.AccessKeyID, "AWS_SECRET_ACCESS_KEY": "wrong"}, "sts", "get-caller-identity")
	if err == nil || !strings.Contains(stderr, "SignatureDoesNotMatch") {
		t.Errorf("wrong secret through the CLI: err %v, stderr %q", err, stderr)
	}
}
