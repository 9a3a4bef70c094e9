package sts_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// assumeReader returns session credentials for readerRole from the emulator.
func assumeReader(t *testing.T, c *sts.Client) sts.Credentials {
	t.Helper()
	res, err := c.AssumeRole(context.Background(), sts.AssumeRoleRequest{RoleArn: readerRole, SessionName: "ecr-test", DurationSeconds: 43200}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.Credentials
}

func TestECRAuthorizationToken(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakePassiveClock(now)
	srv := startEmulator(t, ststest.Options{Clock: clk})
	c := newClient(t, srv.URL, func(o *sts.Options) { o.ECREndpoint = srv.URL })
	creds := assumeReader(t, c)

	logins, err := c.ECRAuthorizationToken(context.Background(), sts.ECRRequest{Region: "eu-west-1", RegistryIDs: []string{"111122223333", "444455556666"}}, creds)
	if err != nil {
		t.Fatal(err)
	}
	if len(logins) != 2 {
		t.Fatalf("got %d logins, want one per registry ID", len(logins))
	}
	for i, id := range []string{"111122223333", "444455556666"} {
		l := logins[i]
		if want := id + ".dkr.ecr.eu-west-1.amazonaws.com"; l.Server != want {
			t.Errorf("login %d server %q, want %q (scheme stripped)", i, l.Server, want)
		}
		if l.Username != "AWS" || l.Password == "" {
			t.Errorf("login %d username %q, password set %v", i, l.Username, l.Password != "")
		}
		if want := now.Add(12 * time.Hour); !l.ExpiresAt.Equal(want) {
			t.Errorf("login %d expires %s, want %s (12 h, from ECR's epoch-seconds field)", i, l.ExpiresAt, want)
		}
		if err := srv.RegistryLogin(l.Server, l.Username, l.Password); err != nil {
			t.Errorf("registry refuses login %d: %v", i, err)
		}
		if s := fmt.Sprintf("%v %+v %#v %s", l, l, l, l); strings.Contains(s, l.Password) {
			t.Errorf("formatting a login prints the password")
		}
	}
	calls := srv.Calls()
	last := calls[len(calls)-1]
	if last.Action != "GetAuthorizationToken" || last.Region != "eu-west-1" || strings.Join(last.RegistryIDs, ",") != "111122223333,444455556666" ||
		!strings.Contains(last.Caller, ":assumed-role/reader/ecr-test") {
		t.Errorf("ECR saw %+v; want the assumed session calling in eu-west-1 with both registry IDs", last)
	}

	// No registry IDs: the caller's own account.
	logins, err = c.ECRAuthorizationToken(context.Background(), sts.ECRRequest{Region: "eu-west-1"}, creds)
	if err != nil || len(logins) != 1 || logins[0].Server != "111122223333.dkr.ecr.eu-west-1.amazonaws.com" {
		t.Fatalf("default registry: %v, %v", logins, err)
	}
	clk.SetTime(now.Add(12 * time.Hour))
	if err := srv.RegistryLogin(logins[0].Server, "AWS", logins[0].Password); err == nil {
		t.Error("the registry accepts a token at its expiry")
	}
}

func TestECRErrors(t *testing.T) {
	srv := startEmulator(t, ststest.Options{})
	c := newClient(t, srv.URL, func(o *sts.Options) { o.ECREndpoint = srv.URL; o.MaxAttempts = 1 })
	creds := assumeReader(t, c)
	ctx := context.Background()
	req := sts.ECRRequest{Region: "us-east-1"}

	srv.SetECRDenied(readerRole, true)
	_, err := c.ECRAuthorizationToken(ctx, req, creds)
	if sts.Code(err) != "AccessDeniedException" || sts.IsRetryable(err) || !strings.HasPrefix(err.Error(), "ecr GetAuthorizationToken: AccessDeniedException") {
		t.Errorf("denied: %v (code %q); want terminal AccessDeniedException", err, sts.Code(err))
	}
	srv.SetECRDenied(readerRole, false)

	srv.FailNextAction("GetAuthorizationToken", 1, "ServerException", http.StatusInternalServerError, "injected")
	if _, err := c.ECRAuthorizationToken(ctx, req, creds); sts.Code(err) != "ServerException" || !sts.IsRetryable(err) {
		t.Errorf("server error: %v; want retryable ServerException", err)
	}
	srv.FailNextAction("GetAuthorizationToken", 1, "ThrottlingException", http.StatusBadRequest, "Rate exceeded")
	if _, err := c.ECRAuthorizationToken(ctx, req, creds); sts.Code(err) != "ThrottlingException" || !sts.IsRetryable(err) {
		t.Errorf("throttled: %v; want retryable ThrottlingException", err)
	}

	bad := creds
	bad.SessionToken = "IQoJb3JpZ2luX2Vj" + strings.Repeat("x", 300)
	if _, err := c.ECRAuthorizationToken(ctx, req, bad); sts.Code(err) != "UnrecognizedClientException" || sts.IsRetryable(err) {
		t.Errorf("wrong session token: %v; want terminal UnrecognizedClientException", err)
	}

	before := srv.CallCount("GetAuthorizationToken")
	for _, r := range []sts.ECRRequest{{Region: "nowhere"}, {Region: "us-east-1", RegistryIDs: []string{"12345"}}, {Region: "us-east-1", RegistryIDs: make([]string, 11)}} {
		if _, err := c.ECRAuthorizationToken(ctx, r, creds); sts.Code(err) != sts.CodeInvalidRequest {
			t.Errorf("%+v: %v; want refused locally", r, err)
		}
	}
	if n := srv.CallCount("GetAuthorizationToken") - before; n != 0 {
		t.Errorf("%d invalid requests reached ECR", n)
	}
}

// The emulator's registry check speaks HTTP like a registry's /v2/ endpoint.
func TestRegistryV2Login(t *testing.T) {
	srv := startEmulator(t, ststest.Options{})
	c := newClient(t, srv.URL, func(o *sts.Options) { o.ECREndpoint = srv.URL })
	logins, err := c.ECRAuthorizationToken(context.Background(), sts.ECRRequest{Region: "us-east-1"}, assumeReader(t, c))
	if err != nil {
		t.Fatal(err)
	}
	get := func(host, user, pass string) int {
		req := httptest.NewRequest(http.MethodGet, "/v2/", nil)
		req.Host = host
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := get(logins[0].Server, "AWS", logins[0].Password); code != http.StatusOK {
		t.Errorf("valid login: HTTP %d", code)
	}
	if code := get(logins[0].Server, "", ""); code != http.StatusUnauthorized {
		t.Errorf("anonymous: HTTP %d", code)
	}
	if code := get("999999999999.dkr.ecr.us-east-1.amazonaws.com", "AWS", logins[0].Password); code != http.StatusUnauthorized {
		t.Errorf("token used for another registry: HTTP %d", code)
	}
}
