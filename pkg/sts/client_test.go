package sts_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

var operator = ststest.Principal{
	AccessKeyID:     "AKIAOPERATOR00000001",
	SecretAccessKey: "operatorSecretKey0000000000000000000000001",
	Arn:             "arn:aws:iam::000000000000:user/rolekeeper",
}

const (
	readerRole   = "arn:aws:iam::111122223333:role/reader"
	deployerRole = "arn:aws:iam::444455556666:role/deployer"
)

func startEmulator(t testing.TB, opts ststest.Options) *ststest.Server {
	t.Helper()
	opts.Principals = append(opts.Principals, operator)
	srv := ststest.New(opts).Start()
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t testing.TB, endpoint string, mod func(*sts.Options)) *sts.Client {
	t.Helper()
	opts := sts.Options{Region: "us-east-1", Endpoint: endpoint, QPS: 1000, Burst: 1000}
	if mod != nil {
		mod(&opts)
	}
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider(operator.AccessKeyID, operator.SecretAccessKey, ""),
	}
	return sts.New(cfg, opts)
}

func fullRequest() sts.AssumeRoleRequest {
	return sts.AssumeRoleRequest{
		RoleArn:           readerRole,
		SessionName:       "payments.reader",
		DurationSeconds:   1800,
		ExternalID:        "ext-id:42/a",
		SourceIdentity:    "ci@example.com",
		Policy:            `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`,
		PolicyArns:        []string{"arn:aws:iam::aws:policy/ReadOnlyAccess", "arn:aws:iam::111122223333:policy/extra"},
		Tags:              []sts.Tag{{Key: "kubernetes-namespace", Value: "payments"}, {Key: "équipe", Value: "données 1"}, {Key: "empty", Value: ""}},
		TransitiveTagKeys: []string{"kubernetes-namespace"},
	}
}

func TestAssumeRoleSendsEveryParameter(t *testing.T) {
	fake := clocktesting.NewFakeClock(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	srv := startEmulator(t, ststest.Options{Clock: fake})
	c := newClient(t, srv.URL, func(o *sts.Options) { o.Clock = fake })
	req := fullRequest()

	res, err := c.AssumeRole(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	calls := srv.Calls()
	if len(calls) != 1 {
		t.Fatalf("emulator saw %d calls, want 1", len(calls))
	}
	got := calls[0]
	want := ststest.Call{
		Time: fake.Now(), Action: "AssumeRole", Caller: operator.Arn, CallerAccessKey: operator.AccessKeyID,
		Region: "us-east-1", Host: strings.TrimPrefix(srv.URL, "http://"),
		RoleArn: req.RoleArn, SessionName: req.SessionName, DurationSeconds: req.DurationSeconds,
		ExternalID: req.ExternalID, SourceIdentity: req.SourceIdentity, Policy: req.Policy,
		PolicyArns: req.PolicyArns, TransitiveTagKeys: req.TransitiveTagKeys,
		IssuedAccessKey: res.Credentials.AccessKeyID,
	}
	for _, tag := range req.Tags {
		want.Tags = append(want.Tags, ststest.Tag{Key: tag.Key, Value: tag.Value})
	}
	if fmt.Sprintf("%#v", got) != fmt.Sprintf("%#v", want) {
		t.Fatalf("emulator received\n %#v\nwant\n %#v", got, want)
	}

	if !res.IssuedAt.Equal(fake.Now()) || !res.Credentials.Expiration.Equal(fake.Now().Add(30*time.Minute)) {
		t.Errorf("issued %v expiring %v; want issued now and 30m lifetime", res.IssuedAt, res.Credentials.Expiration)
	}
	if res.AssumedRoleArn != "arn:aws:sts::111122223333:assumed-role/reader/payments.reader" {
		t.Errorf("assumed role ARN %q", res.AssumedRoleArn)
	}
	if !strings.HasPrefix(res.AssumedRoleID, "AROA") || !strings.HasSuffix(res.AssumedRoleID, ":payments.reader") {
		t.Errorf("assumed role id %q", res.AssumedRoleID)
	}
	if res.SourceIdentity != req.SourceIdentity {
		t.Errorf("source identity %q", res.SourceIdentity)
	}
	if res.PackedPolicySize == nil || *res.PackedPolicySize <= 0 || *res.PackedPolicySize > 100 {
		t.Errorf("packed policy size %v", res.PackedPolicySize)
	}
	if res.RequestID == "" {
		t.Error("no request id")
	}

	// The issued credentials authenticate as the assumed role.
	id, err := c.GetCallerIdentity(context.Background(), "", &res.Credentials)
	if err != nil {
		t.Fatal(err)
	}
	if id.Arn != res.AssumedRoleArn || id.Account != "111122223333" || id.UserID != res.AssumedRoleID {
		t.Errorf("caller identity %+v, want the assumed role", id)
	}
}

func TestRoleChaining(t *testing.T) {
	srv := startEmulator(t, ststest.Options{})
	c := newClient(t, srv.URL, nil)
	first, err := c.AssumeRole(context.Background(), sts.AssumeRoleRequest{RoleArn: readerRole, SessionName: "hop1", DurationSeconds: 3600,
		Tags: []sts.Tag{{Key: "kubernetes-namespace", Value: "payments"}}, TransitiveTagKeys: []string{"kubernetes-namespace"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetRole(deployerRole, ststest.RoleRule{RequireTags: map[string]string{"kubernetes-namespace": "payments"}, AllowedCallers: []string{"arn:aws:sts::111122223333:assumed-role/reader/*"}})

	second, err := c.AssumeRole(context.Background(), sts.AssumeRoleRequest{RoleArn: deployerRole, SessionName: "hop2", DurationSeconds: 3600, Chained: true}, &first.Credentials)
	if err != nil {
		t.Fatalf("second hop: %v", err)
	}
	if got := srv.Calls()[1].Caller; got != first.AssumedRoleArn {
		t.Errorf("second hop signed by %q, want the first session %q", got, first.AssumedRoleArn)
	}
	if second.AssumedRoleArn != "arn:aws:sts::444455556666:assumed-role/deployer/hop2" {
		t.Errorf("second hop ARN %q", second.AssumedRoleArn)
	}

	// Over an hour: refused locally when the caller knows it chains, by STS when it does not.
	_, err = c.AssumeRole(context.Background(), sts.AssumeRoleRequest{RoleArn: deployerRole, SessionName: "hop2", DurationSeconds: 7200, Chained: true}, &first.Credentials)
	if sts.Code(err) != sts.CodeInvalidRequest || srv.CallCount("") != 2 {
		t.Errorf("chained 2h: %v after %d calls; want a local refusal and no call", err, srv.CallCount(""))
	}
	_, err = c.AssumeRole(context.Background(), sts.AssumeRoleRequest{RoleArn: deployerRole, SessionName: "hop2", DurationSeconds: 7200}, &first.Credentials)
	if sts.Code(err) != "ValidationError" || sts.IsRetryable(err) || !strings.Contains(err.Error(), "1 hour session limit") {
		t.Errorf("chained 2h at STS: %v; want a terminal ValidationError about the 1 hour limit", err)
	}
	// The trust rule requires the namespace tag: the operator's own identity lacks it.
	_, err = c.AssumeRole(context.Background(), sts.AssumeRoleRequest{RoleArn: deployerRole, SessionName: "direct", DurationSeconds: 3600}, nil)
	if sts.Code(err) != "AccessDenied" {
		t.Errorf("direct call without the tag: %v; want AccessDenied", err)
	}
}

func TestAssumeRoot(t *testing.T) {
	srv := startEmulator(t, ststest.Options{})
	c := newClient(t, srv.URL, nil)
	req := sts.AssumeRootRequest{Region: "eu-west-1", TargetPrincipal: "444455556666", TaskPolicyArn: sts.TaskPolicyArn("eu-west-1", "S3UnlockBucketPolicy"), DurationSeconds: 900}
	res, err := c.AssumeRoot(context.Background(), req, nil)
	if err != nil {
		t.Fatal(err)
	}
	call := srv.Calls()[0]
	if call.Action != "AssumeRoot" || call.TargetPrincipal != req.TargetPrincipal || call.TaskPolicyArn != "arn:aws:iam::aws:policy/root-task/S3UnlockBucketPolicy" || call.DurationSeconds != 900 || call.Region != "eu-west-1" {
		t.Errorf("emulator received %+v", call)
	}
	id, err := c.GetCallerIdentity(context.Background(), "eu-west-1", &res.Credentials)
	if err != nil || id.Arn != "arn:aws:iam::444455556666:root" {
		t.Errorf("root session identity %+v, %v", id, err)
	}

	// No region anywhere: refused before any call.
	noRegion := sts.New(aws.Config{Credentials: credentials.NewStaticCredentialsProvider(operator.AccessKeyID, operator.SecretAccessKey, "")}, sts.Options{Endpoint: srv.URL})
	req.Region = ""
	_, err = noRegion.AssumeRoot(context.Background(), req, nil)
	if sts.Code(err) != sts.CodeInvalidRequest || !strings.Contains(err.Error(), "AssumeRoot needs a region") || srv.CallCount("") != 2 {
		t.Errorf("AssumeRoot without region: %v (%d calls)", err, srv.CallCount(""))
	}
}

// The global endpoint refuses AssumeRoot; the client is pointed at sts.amazonaws.com and its
// connections are routed to the emulator.
func TestAssumeRootOnGlobalEndpointIsRegionDisabled(t *testing.T) {
	srv := startEmulator(t, ststest.Options{})
	addr := strings.TrimPrefix(srv.URL, "http://")
	routed := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	c := newClient(t, "http://sts.amazonaws.com", func(o *sts.Options) { o.HTTPClient = routed; o.MaxAttempts = 1 })
	_, err := c.AssumeRoot(context.Background(), sts.AssumeRootRequest{Region: "us-east-1", TargetPrincipal: "444455556666", TaskPolicyArn: sts.TaskPolicyArn("us-east-1", "SQSUnlockQueuePolicy"), DurationSeconds: 900}, nil)
	if sts.Code(err) != "RegionDisabledException" || sts.IsRetryable(err) {
		t.Fatalf("got %v; want terminal RegionDisabledException", err)
	}
}

func TestErrorClasses(t *testing.T) {
	cases := []struct {
		code      string
		status    int
		retryable bool
	}{
		{"Throttling", 400, true},
		{"ThrottlingException", 400, true},
		{"RequestLimitExceeded", 400, true},
		{"ServiceUnavailable", 503, true},
		{"InternalFailure", 500, true},
		{"IDPCommunicationError", 400, true},
		{"SomethingNew", 502, true},
		{"AccessDenied", 403, false},
		{"MalformedPolicyDocument", 400, false},
		{"PackedPolicyTooLarge", 400, false},
		{"RegionDisabledException", 403, false},
		{"ValidationError", 400, false},
		{"ExpiredToken", 400, true},
		{"InvalidClientTokenId", 403, false},
		{"SomethingElseNew", 400, false},
	}
	srv := startEmulator(t, ststest.Options{})
	c := newClient(t, srv.URL, func(o *sts.Options) { o.MaxAttempts = 1 })
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			srv.FailNext(1, tc.code, tc.status, "injected "+tc.code)
			_, err := c.AssumeRole(context.Background(), fullRequest(), nil)
			var e *sts.Error
			if !errors.As(err, &e) {
				t.Fatalf("got %T %v; want *sts.Error", err, err)
			}
			if e.Code != tc.code || e.Retryable != tc.retryable || e.HTTPStatus != tc.status || e.RequestID == "" {
				t.Errorf("got code %q retryable %v status %d request id %q; want %q %v %d", e.Code, e.Retryable, e.HTTPStatus, e.RequestID, tc.code, tc.retryable, tc.status)
			}
			if !strings.Contains(e.Error(), "injected "+tc.code) || !strings.Contains(e.Error(), e.RequestID) {
				t.Errorf("message %q lacks the AWS message or request id", e.Error())
			}
		})
	}
}

func TestSDKRetriesRetryableErrorsWithinBound(t *testing.T) {
	srv := startEmulator(t, ststest.Options{})
	c := newClient(t, srv.URL, func(o *sts.Options) { o.MaxAttempts = 3 })
	srv.ThrottleNext(2)
	if _, err := c.AssumeRole(context.Background(), fullRequest(), nil); err != nil {
		t.Fatalf("two throttles within three attempts: %v", err)
	}
	if n := srv.CallCount("AssumeRole"); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	srv.ResetCalls()
	srv.ThrottleNext(5)
	_, err := c.AssumeRole(context.Background(), fullRequest(), nil)
	if sts.Code(err) != "Throttling" || !sts.IsRetryable(err) {
		t.Errorf("after exhausting attempts: %v; want retryable Throttling", err)
	}
	if n := srv.CallCount("AssumeRole"); n != 3 {
		t.Errorf("%d attempts, want exactly MaxAttempts=3", n)
	}
	srv.ClearFaults()
	srv.ResetCalls()
	srv.FailNext(1, "AccessDenied", 403, "no")
	_, _ = c.AssumeRole(context.Background(), fullRequest(), nil)
	if n := srv.CallCount("AssumeRole"); n != 1 {
		t.Errorf("terminal error attempted %d times, want 1", n)
	}
}

// Errors that come from the emulator's own checks rather than injection.
func TestEmulatorRefusals(t *testing.T) {
	fake := clocktesting.NewFakeClock(time.Now())
	srv := startEmulator(t, ststest.Options{Clock: fake})
	c := newClient(t, srv.URL, func(o *sts.Options) { o.MaxAttempts = 1 })
	ctx := context.Background()

	res, err := c.AssumeRole(ctx, sts.AssumeRoleRequest{RoleArn: readerRole, SessionName: "s1", DurationSeconds: 900}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fake.Step(901 * time.Second)
	// Retryable: the usual causes (the operator's own session or a chain source rolling over
	// while a call was on its way) clear by themselves.
	if _, err := c.GetCallerIdentity(ctx, "", &res.Credentials); sts.Code(err) != "ExpiredToken" || !sts.IsRetryable(err) {
		t.Errorf("expired credentials: %v; want retryable ExpiredToken", err)
	}

	stranger := sts.New(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIAUNKNOWN000000000", "x", "")}, sts.Options{Endpoint: srv.URL, MaxAttempts: 1})
	if _, err := stranger.GetCallerIdentity(ctx, "", nil); sts.Code(err) != "InvalidClientTokenId" {
		t.Errorf("unknown key: %v; want InvalidClientTokenId", err)
	}
	wrongSecret := sts.New(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(operator.AccessKeyID, "wrong", "")}, sts.Options{Endpoint: srv.URL, MaxAttempts: 1})
	if _, err := wrongSecret.GetCallerIdentity(ctx, "", nil); sts.Code(err) != "SignatureDoesNotMatch" {
		t.Errorf("wrong secret: %v; want SignatureDoesNotMatch", err)
	}

	srv.SetRole(deployerRole, ststest.RoleRule{ExternalID: "right", DenyTagSession: true, MaxSessionDuration: 3600})
	deny := []struct {
		name string
		req  sts.AssumeRoleRequest
		code string
	}{
		{"wrong external id", sts.AssumeRoleRequest{RoleArn: deployerRole, SessionName: "sx", DurationSeconds: 900, ExternalID: "wrong"}, "AccessDenied"},
		{"tags without sts:TagSession", sts.AssumeRoleRequest{RoleArn: deployerRole, SessionName: "sx", DurationSeconds: 900, ExternalID: "right", Tags: []sts.Tag{{Key: "a", Value: "b"}}}, "AccessDenied"},
		{"over the role's max session", sts.AssumeRoleRequest{RoleArn: deployerRole, SessionName: "sx", DurationSeconds: 7200, ExternalID: "right"}, "ValidationError"},
		{"packed policy too large", sts.AssumeRoleRequest{RoleArn: readerRole, SessionName: "sx", DurationSeconds: 900, Tags: bigTags()}, "PackedPolicyTooLarge"},
	}
	for _, d := range deny {
		_, err := c.AssumeRole(ctx, d.req, nil)
		if sts.Code(err) != d.code || sts.IsRetryable(err) {
			t.Errorf("%s: %v; want terminal %s", d.name, err, d.code)
		}
	}
	if _, err := c.AssumeRole(ctx, sts.AssumeRoleRequest{RoleArn: deployerRole, SessionName: "sx", DurationSeconds: 900, ExternalID: "right"}, nil); err != nil {
		t.Errorf("the right external id without tags: %v", err)
	}

	// Malformed policy and STS-side validation, sent with the raw SDK client because pkg/sts
	// refuses such requests before sending.
	raw := awssts.New(awssts.Options{Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(operator.AccessKeyID, operator.SecretAccessKey, "")})
	_, err = raw.AssumeRole(ctx, &awssts.AssumeRoleInput{RoleArn: aws.String(readerRole), RoleSessionName: aws.String("sx"), Policy: aws.String("{not json")})
	if got := sts.Code(classified(err)); got != "MalformedPolicyDocument" {
		t.Errorf("malformed policy: %v", err)
	}
	_, err = raw.AssumeRole(ctx, &awssts.AssumeRoleInput{RoleArn: aws.String(readerRole), RoleSessionName: aws.String("sx"), DurationSeconds: aws.Int32(60)})
	if got := sts.Code(classified(err)); got != "ValidationError" {
		t.Errorf("60 s duration: %v", err)
	}
}

// classified runs err through the client's classification by way of an injected-fault-free path:
// the raw SDK error is wrapped the same way pkg/sts wraps it.
func classified(err error) error { return sts.Classify("AssumeRole", err) }

func bigTags() []sts.Tag {
	var tags []sts.Tag
	for i := range 50 {
		tags = append(tags, sts.Tag{Key: fmt.Sprintf("key-%02d-%s", i, strings.Repeat("k", 100)), Value: strings.Repeat("v", 256)})
	}
	return tags
}

func TestNetworkFailuresAreRetryable(t *testing.T) {
	srv := startEmulator(t, ststest.Options{})
	c := newClient(t, srv.URL, func(o *sts.Options) { o.MaxAttempts = 1; o.Timeout = 300 * time.Millisecond })
	srv.SetDown(true)
	_, err := c.AssumeRole(context.Background(), fullRequest(), nil)
	if sts.Code(err) != sts.CodeNetwork || !sts.IsRetryable(err) {
		t.Errorf("emulator down: %v; want retryable %s", err, sts.CodeNetwork)
	}
	srv.SetDown(false)
	srv.SetLatency(2 * time.Second)
	_, err = c.AssumeRole(context.Background(), fullRequest(), nil)
	if sts.Code(err) != sts.CodeTimeout || !sts.IsRetryable(err) {
		t.Errorf("slow emulator: %v; want retryable %s", err, sts.CodeTimeout)
	}

	refused := newClient(t, "http://127.0.0.1:1", func(o *sts.Options) { o.MaxAttempts = 1 })
	_, err = refused.AssumeRole(context.Background(), fullRequest(), nil)
	if sts.Code(err) != sts.CodeNetwork || !sts.IsRetryable(err) {
		t.Errorf("connection refused: %v; want retryable %s", err, sts.CodeNetwork)
	}
}

// With a near-zero refill, exactly Burst calls get through; the rest wait for the limiter and
// give up when their context ends, without reaching STS.
func TestRateLimiterBoundsConcurrentCalls(t *testing.T) {
	srv := startEmulator(t, ststest.Options{})
	// A generous timeout: a call holding a token must reach STS even on a loaded machine.
	c := newClient(t, srv.URL, func(o *sts.Options) { o.QPS = 0.001; o.Burst = 5; o.Timeout = 2 * time.Second })
	var wg sync.WaitGroup
	var mu sync.Mutex
	limited := 0
	for range 40 {
		wg.Go(func() {
			_, err := c.AssumeRole(context.Background(), fullRequest(), nil)
			if sts.Code(err) == sts.CodeRateLimitWaiting || sts.Code(err) == sts.CodeTimeout {
				mu.Lock()
				limited++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if n := srv.CallCount(""); n != 5 {
		t.Errorf("%d calls reached STS, want exactly the burst of 5", n)
	}
	if limited != 35 {
		t.Errorf("%d calls were held back, want 35", limited)
	}
}

func TestObserveReportsEveryCall(t *testing.T) {
	srv := startEmulator(t, ststest.Options{})
	var mu sync.Mutex
	seen := map[string]int{}
	c := newClient(t, srv.URL, func(o *sts.Options) {
		o.MaxAttempts = 1
		o.Observe = func(op, code string, _ time.Duration) { mu.Lock(); seen[op+"/"+code]++; mu.Unlock() }
	})
	_, _ = c.AssumeRole(context.Background(), fullRequest(), nil)
	srv.FailNext(1, "AccessDenied", 403, "no")
	_, _ = c.AssumeRole(context.Background(), fullRequest(), nil)
	_, _ = c.GetCallerIdentity(context.Background(), "", nil)
	want := map[string]int{"AssumeRole/OK": 1, "AssumeRole/AccessDenied": 1, "GetCallerIdentity/OK": 1}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("observed %v, want %v", seen, want)
	}
}

// No error, and no formatting of credentials, may carry key material.
func TestNoCredentialMaterialInErrorsOrFormatting(t *testing.T) {
	srv := startEmulator(t, ststest.Options{})
	c := newClient(t, srv.URL, func(o *sts.Options) { o.MaxAttempts = 1 })
	res, err := c.AssumeRole(context.Background(), fullRequest(), nil)
	if err != nil {
		t.Fatal(err)
	}
	creds := res.Credentials
	secrets := []string{creds.SecretAccessKey, creds.SessionToken, creds.AccessKeyID, operator.SecretAccessKey}
	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
		outputs = append(outputs, fmt.Sprintf(verb, creds), fmt.Sprintf(verb, res), fmt.Sprintf(verb, &res))
	}
	srv.SetDown(true)
	_, err = c.GetCallerIdentity(context.Background(), "", &creds)
	outputs = append(outputs, err.Error())
	srv.SetDown(false)
	srv.FailNext(1, "AccessDenied", 403, "denied for "+creds.AccessKeyID+" with token "+creds.SessionToken+" Signature="+strings.Repeat("ab12", 16))
	_, err = c.AssumeRole(context.Background(), fullRequest(), &creds)
	outputs = append(outputs, err.Error(), fmt.Sprintf("%+v", err))
	for _, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Fatalf("output carries credential material:\n%s", out)
			}
		}
	}
}

func TestRedact(t *testing.T) {
	cases := map[string]string{
		"User: arn:aws:sts::111122223333:assumed-role/some-long-role-name-for-testing/payments.reader is not authorized": "User: arn:aws:sts::111122223333:assumed-role/some-long-role-name-for-testing/payments.reader is not authorized",
		"key ASIAXYZXYZXYZXYZXYZ1 leaked":                                             "key [REDACTED] leaked",
		"secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY ok":                          "secret [REDACTED] ok",
		"Signature=deadbeef00 end":                                                    "Signature=[REDACTED] end",
		"X-Amz-Security-Token: abc.def":                                               "X-Amz-Security-Token: [REDACTED]",
		"Post \"https://sts.us-east-1.amazonaws.com/\": dial tcp: connection refused": "Post \"https://sts.us-east-1.amazonaws.com/\": dial tcp: connection refused",
	}
	for in, want := range cases {
		if got := sts.Redact(in); got != want {
			t.Errorf("Redact(%q)\n got %q\nwant %q", in, got, want)
		}
	}
}

// The emulator answers on plain HTTP; the URL of a request never carries parameters.
func TestQueryProtocolUsesPOSTBody(t *testing.T) {
	var mu sync.Mutex
	var seen []*url.URL
	srv := startEmulator(t, ststest.Options{})
	c := newClient(t, srv.URL, func(o *sts.Options) {
		o.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			mu.Lock()
			seen = append(seen, r.URL)
			mu.Unlock()
			if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
				t.Errorf("%s %s with content type %q", r.Method, r.URL, r.Header.Get("Content-Type"))
			}
			return http.DefaultTransport.RoundTrip(r)
		})}
	})
	if _, err := c.AssumeRole(context.Background(), fullRequest(), nil); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 1 || seen[0].RawQuery != "" {
		t.Errorf("requests %v; want one with no query string", seen)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
