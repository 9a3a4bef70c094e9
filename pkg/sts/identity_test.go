package sts_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

// irsaSession is the operator's own identity as IRSA gives it: a role session.
var irsaSession = ststest.Principal{
	AccessKeyID: "ASIAOPERATORIRSA0001", SecretAccessKey: "irsa-secret-00000000000000000000000000001", SessionToken: "irsa-session-token",
	Arn: "arn:aws:sts::000000000000:assumed-role/rolekeeper/irsa-session",
}

// switchable hands out one principal's keys until told to hand out another's, as the SDK's
// providers do when a session is refreshed; expires says how long each set is valid.
type switchable struct {
	mu        sync.Mutex
	p         ststest.Principal
	expires   time.Duration
	retrieved atomic.Int32
}

func (s *switchable) set(p ststest.Principal) { s.mu.Lock(); s.p = p; s.mu.Unlock() }

func (s *switchable) Retrieve(context.Context) (aws.Credentials, error) {
	s.retrieved.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := aws.Credentials{AccessKeyID: s.p.AccessKeyID, SecretAccessKey: s.p.SecretAccessKey, SessionToken: s.p.SessionToken}
	if s.expires > 0 {
		c.CanExpire, c.Expires = true, time.Now().Add(s.expires)
	}
	return c, nil
}

// counting records the calls of one operation that the client reports to Observe.
type counting struct{ n atomic.Int32 }

func (c *counting) observe(op string) func(string, string, time.Duration) {
	return func(got, _ string, _ time.Duration) {
		if got == op {
			c.n.Add(1)
		}
	}
}

// The operator learns its own identity with one GetCallerIdentity, answers from memory after
// that, and asks again by itself when its credentials change to another key.
func TestOwnIdentityIsLearntOnceAndAgainAfterTheCredentialsChange(t *testing.T) {
	srv := startEmulator(t, ststest.Options{Principals: []ststest.Principal{irsaSession}})
	provider := &switchable{p: operator}
	cache := aws.NewCredentialsCache(provider)
	var calls counting
	learnt := make(chan sts.Identity, 4)
	c := sts.New(aws.Config{Region: "us-east-1", Credentials: cache},
		sts.Options{Endpoint: srv.URL, QPS: 1000, Burst: 1000, Observe: calls.observe("GetCallerIdentity"), OnIdentity: func(id sts.Identity) { learnt <- id }})
	ctx := context.Background()

	for range 3 {
		id, err := c.OwnIdentity(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if id.Arn != operator.Arn || id.RoleSession() || id.Kind() != "iam-user" {
			t.Fatalf("identity %+v kind %s", id, id.Kind())
		}
	}
	if n := calls.n.Load(); n != 1 {
		t.Fatalf("%d GetCallerIdentity calls for three questions, want 1", n)
	}
	if id := <-learnt; id.Arn != operator.Arn {
		t.Fatalf("told of %+v", id)
	}

	// The SDK refreshes the credentials, now to a role session; the next call signed with them
	// notices, and the identity is learnt again without anyone asking.
	provider.set(irsaSession)
	cache.Invalidate()
	if _, err := c.AssumeRole(ctx, sts.AssumeRoleRequest{RoleArn: readerRole, SessionName: "s1", DurationSeconds: 900}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-learnt:
		if id.Arn != irsaSession.Arn || !id.RoleSession() || id.Kind() != "role-session" {
			t.Fatalf("learnt %+v kind %s after the change", id, id.Kind())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the new identity was not learnt after the credentials changed")
	}
	if id, err := c.OwnIdentity(ctx); err != nil || id.Arn != irsaSession.Arn {
		t.Fatalf("OwnIdentity after the change: %+v, %v", id, err)
	}
	if n := calls.n.Load(); n != 2 {
		t.Errorf("%d GetCallerIdentity calls, want 2: one per set of credentials", n)
	}
}

// Calls are never signed with the operator's own credentials in their last minute: LoadDefault's
// credential cache refreshes them first.
func TestLoadDefaultRefreshesOwnCredentialsBeforeTheirLastMinute(t *testing.T) {
	srv := startEmulator(t, ststest.Options{})
	for _, tc := range []struct {
		name      string
		validFor  time.Duration
		retrieved int32
	}{
		{"valid for 30 s: refreshed before every call", 30 * time.Second, 3},
		{"valid for 10 min: retrieved once", 10 * time.Minute, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			provider := &switchable{p: operator, expires: tc.validFor}
			c, err := sts.LoadDefault(context.Background(), sts.Options{Region: "us-east-1", Endpoint: srv.URL, MaxAttempts: 1},
				config.WithCredentialsProvider(provider))
			if err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if _, err := c.GetCallerIdentity(context.Background(), "", nil); err != nil {
					t.Fatal(err)
				}
			}
			if got := provider.retrieved.Load(); got != tc.retrieved {
				t.Errorf("credentials retrieved %d times for 3 calls, want %d", got, tc.retrieved)
			}
		})
	}
}

// A regional endpoint that does not exist in DNS is RegionUnknown, terminal; behind the
// operator's endpoint override the same answer stays a retryable network error.
func TestRegionThatDoesNotResolve(t *testing.T) {
	noSuchHost := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.DialContext = func(_ context.Context, _, addr string) (net.Conn, error) {
			host, _, _ := net.SplitHostPort(addr)
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
	})
	regional := newClient(t, "", func(o *sts.Options) { o.HTTPClient = noSuchHost; o.MaxAttempts = 1 })
	_, err := regional.AssumeRole(context.Background(), sts.AssumeRoleRequest{Region: "us-fake-9", RoleArn: readerRole, SessionName: "s1", DurationSeconds: 900}, nil)
	var e *sts.Error
	if !errors.As(err, &e) || e.Code != sts.CodeRegionUnknown || e.Retryable {
		t.Fatalf("got %v; want terminal %s", err, sts.CodeRegionUnknown)
	}
	for _, want := range []string{"us-fake-9", "sts.us-fake-9.amazonaws.com", "partition aws"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q does not name %s", e.Message, want)
		}
	}
	overridden := newClient(t, "https://sts.vpce.example.internal", func(o *sts.Options) { o.HTTPClient = noSuchHost; o.MaxAttempts = 1 })
	_, err = overridden.AssumeRole(context.Background(), sts.AssumeRoleRequest{Region: "us-east-1", RoleArn: readerRole, SessionName: "s1", DurationSeconds: 900}, nil)
	if sts.Code(err) != sts.CodeNetwork || !sts.IsRetryable(err) {
		t.Errorf("behind an endpoint override: %v; want a retryable %s", err, sts.CodeNetwork)
	}
}
