package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// The demo's whole start-up path: control plane, CRDs and RBAC, emulator, operator, samples Ready,
// Secrets shown without credential values, and a rotation.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := Run(ctx, Options{TimeScale: 90, Rotations: 1, Out: &out}); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"all 5 AssumedRoles are Ready", // 3 samples, the image-pull sample, and one from the ClusterAssumedRole sample
		".dockerconfigjson",
		"arn:aws:iam::111122223333:role/reader",
		"AssumeRoot 444455556666",
		"AWS_SECRET_ACCESS_KEY      (40 bytes, redacted)",
		"AWS_REGION                 us-east-1",
		"rotated ",
		"1 rotations shown; shutting down",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, line := range strings.Split(got, "\n") {
		if strings.Contains(line, "ASIA") {
			t.Errorf("an access key id was printed: %s", line)
		}
	}
	t.Log(got)
}
