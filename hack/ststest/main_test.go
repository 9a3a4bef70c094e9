package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// The emulator built and run as its own process: STS calls, time scale and the control API.
func TestStandaloneEmulator(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "ststest")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-time-scale", "60", "-access-key", "AKIATESTPROCESS00001", "-secret-key", "process-secret")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ststest listening on http://") {
		t.Fatalf("first line %q, %v", line, err)
	}
	url := strings.Fields(line)[3]

	c := sts.New(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIATESTPROCESS00001", "process-secret", "")},
		sts.Options{Endpoint: url, MaxAttempts: 1})
	ctx := context.Background()
	start := time.Now()
	res, err := c.AssumeRole(ctx, sts.AssumeRoleRequest{RoleArn: "arn:aws:iam::111122223333:role/reader", SessionName: "proc", DurationSeconds: 900}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lifetime := res.Credentials.Expiration.Sub(start); lifetime < 13*time.Second || lifetime > 16*time.Second {
		t.Errorf("900 s at time scale 60 lasted %v, want 15 s", lifetime)
	}

	post := func(path string) {
		resp, err := http.Post(url+path, "application/json", nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %v %v", path, resp, err)
		}
		_ = resp.Body.Close()
	}
	post("/_ststest/fail?code=AccessDenied&status=403&n=1&message=injected")
	_, err = c.AssumeRole(ctx, sts.AssumeRoleRequest{RoleArn: "arn:aws:iam::111122223333:role/reader", SessionName: "proc", DurationSeconds: 900}, nil)
	if sts.Code(err) != "AccessDenied" {
		t.Errorf("after injecting AccessDenied: %v", err)
	}
	resp, err := http.Get(url + "/_ststest/calls")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var calls []ststest.Call
	if err := json.NewDecoder(resp.Body).Decode(&calls); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 2 || calls[0].SessionName != "proc" || calls[0].Code != "" || calls[1].Code != "AccessDenied" {
		t.Errorf("calls %+v", calls)
	}
	post("/_ststest/reset")
}
