package sts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	awssts "github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/time/rate"
	"k8s.io/utils/clock"
	"k8s.io/utils/lru"
)

// Options configure a Client. Zero values take the documented defaults.
type Options struct {
	// Region is used when a request names none.
	Region string
	// Endpoint overrides the STS endpoint URL for every call. Only the operator sets it.
	Endpoint string
	// ECREndpoint overrides the Amazon ECR endpoint URL (image-pull Secrets). Only the operator
	// sets it.
	ECREndpoint string
	// UseFIPS and UseDualStack pick endpoint variants.
	UseFIPS, UseDualStack bool
	// QPS and Burst bound calls to STS across all requests of this client, counting each SDK
	// retry attempt. Default 20 and 40.
	QPS   float64
	Burst int
	// MaxAttempts bounds SDK attempts per call, retries included. Default 3.
	MaxAttempts int
	// RetryMode is aws.RetryModeStandard (default) or aws.RetryModeAdaptive.
	RetryMode aws.RetryMode
	// Timeout bounds one call, rate-limit wait and retries included. Default 30s.
	Timeout time.Duration
	// HTTPClient replaces the SDK's HTTP client (tests).
	HTTPClient aws.HTTPClient
	// Clock stamps Result.IssuedAt. Default: the real clock.
	Clock clock.PassiveClock
	// Observe, when set, is told of every call: the operation, its outcome ("OK" or the error
	// code) and how long it took.
	Observe func(operation, code string, took time.Duration)
	// OnIdentity, when set, is told each time the client learns who its own credentials are: at
	// the first OwnIdentity and after the credentials changed.
	OnIdentity func(Identity)
}

// maxRegionalClients bounds the service clients kept per service. Regions come from
// AssumedRoles, so a tenant could name many; the least recently used are dropped.
const maxRegionalClients = 32

// Client calls STS through aws-sdk-go-v2. It is safe for concurrent use.
type Client struct {
	base    aws.Config
	opts    Options
	limiter *rate.Limiter

	regional *lru.Cache // region → *awssts.Client
	ecr      *lru.Cache // region → *ecr.Client

	// id is the identity of the client's own credentials, learnt for the access key idKey.
	idMu   sync.Mutex
	id     Identity
	idKey  string
	idSeen atomic.Pointer[string] // the access key id the credentials last had
}

// Identity is what GetCallerIdentity returns, with where the credentials came from.
type Identity struct {
	Account, Arn, UserID string
	// Source is where the client's own credentials come from: "static-keys", "web-identity",
	// "roles-anywhere", "container" (EKS Pod Identity, ECS), "instance-profile", "shared-config",
	// or the SDK's provider name. Empty for credentials given per call.
	Source string
}

// credentialSource names the SDK credentials provider that produced credentials.
func credentialSource(source string) string {
	switch {
	case source == credentials.StaticCredentialsName || source == "EnvConfigCredentials":
		return "static-keys"
	case source == stscreds.WebIdentityProviderName:
		return "web-identity"
	case source == RolesAnywhereProviderName:
		return "roles-anywhere"
	case source == endpointcreds.ProviderName:
		return "container"
	case source == ec2rolecreds.ProviderName:
		return "instance-profile"
	case strings.HasPrefix(source, "SharedConfigCredentials"):
		return "shared-config"
	}
	return source
}

// RoleSession reports whether the identity is an assumed-role session: IRSA, EKS Pod Identity,
// an instance profile or any other role. AWS treats every AssumeRole signed by one as role
// chaining and caps the session it grants at one hour.
func (i Identity) RoleSession() bool { return strings.Contains(i.Arn, ":assumed-role/") }

// Kind names the identity: "role-session", "iam-user", "root", "federated-user" or "unknown".
func (i Identity) Kind() string {
	switch {
	case i.RoleSession():
		return "role-session"
	case strings.Contains(i.Arn, ":user/"):
		return "iam-user"
	case strings.HasSuffix(i.Arn, ":root"):
		return "root"
	case strings.Contains(i.Arn, ":federated-user/"):
		return "federated-user"
	}
	return "unknown"
}

// OwnExpiryWindow is how long before their expiry the operator's own credentials are refreshed:
// a call is never signed with credentials in their last minute, which could expire on the way
// to AWS (ExpiredToken).
const OwnExpiryWindow = time.Minute

// LoadDefault builds a Client on the SDK's default credential chain: environment, shared config
// and credentials files, IRSA web identity, EKS Pod Identity, then instance metadata. The
// credentials are cached by the SDK and refreshed OwnExpiryWindow before they expire. extra are
// further load options (tests).
func LoadDefault(ctx context.Context, opts Options, extra ...func(*config.LoadOptions) error) (*Client, error) {
	load := []func(*config.LoadOptions) error{
		config.WithRegion(opts.Region),
		config.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = OwnExpiryWindow }),
	}
	if opts.Endpoint != "" {
		// The operator's own AssumeRoleWithWebIdentity goes to the same STS endpoint as every
		// other call (it is unsigned: the token is the proof).
		load = append(load, config.WithWebIdentityRoleCredentialOptions(func(o *stscreds.WebIdentityRoleOptions) {
			o.Client = awssts.New(awssts.Options{Region: opts.Region, BaseEndpoint: aws.String(opts.Endpoint), HTTPClient: opts.HTTPClient})
		}))
	}
	load = append(load, extra...)
	cfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	return New(cfg, opts), nil
}

// New builds a Client on an aws.Config, whose credentials sign every call that names no source.
func New(cfg aws.Config, opts Options) *Client {
	if opts.QPS <= 0 {
		opts.QPS = 20
	}
	if opts.Burst < 1 {
		opts.Burst = 40
	}
	if opts.MaxAttempts < 1 {
		opts.MaxAttempts = 3
	}
	if opts.RetryMode == "" {
		opts.RetryMode = aws.RetryModeStandard
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Region == "" {
		opts.Region = cfg.Region
	}
	if opts.HTTPClient != nil {
		cfg.HTTPClient = opts.HTTPClient
	}
	c := &Client{
		opts:     opts,
		limiter:  rate.NewLimiter(rate.Limit(opts.QPS), opts.Burst),
		regional: lru.New(maxRegionalClients),
		ecr:      lru.New(maxRegionalClients),
	}
	if cfg.Credentials != nil {
		cfg.Credentials = &watchedCredentials{CredentialsProvider: cfg.Credentials, c: c}
	}
	// Every service client (STS, ECR) shares the retry policy and the rate limit.
	cfg.Retryer = c.retryer
	cfg.APIOptions = append(append([]func(*middleware.Stack) error(nil), cfg.APIOptions...), c.rateLimit)
	c.base = cfg
	return c
}

// endpointVariants are the FIPS and dual-stack settings every service client uses.
func (c *Client) endpointVariants() (aws.FIPSEndpointState, aws.DualStackEndpointState) {
	fips, dual := aws.FIPSEndpointStateUnset, aws.DualStackEndpointStateUnset
	if c.opts.UseFIPS {
		fips = aws.FIPSEndpointStateEnabled
	}
	if c.opts.UseDualStack {
		dual = aws.DualStackEndpointStateEnabled
	}
	return fips, dual
}

// Region returns the client's default region.
func (c *Client) Region() string { return c.opts.Region }

func (c *Client) forRegion(region string) *awssts.Client {
	return regionalClient(c.regional, region, func() *awssts.Client {
		return awssts.NewFromConfig(c.base, func(o *awssts.Options) {
			o.Region = region
			if c.opts.Endpoint != "" {
				o.BaseEndpoint = aws.String(c.opts.Endpoint)
			}
			o.EndpointOptions.UseFIPSEndpoint, o.EndpointOptions.UseDualStackEndpoint = c.endpointVariants()
		})
	})
}

// regionalClient returns the service client of a region from cache, building it on first use.
// Service clients are safe for concurrent use and keep their connections, so one per region
// serves every AssumedRole. Two callers may both build a missing one; either is kept.
func regionalClient[T any](cache *lru.Cache, region string, build func() T) T {
	if cl, ok := cache.Get(region); ok {
		return cl.(T)
	}
	cl := build()
	cache.Add(region, cl)
	return cl
}

// watchedCredentials is the client's own credentials provider (the SDK's cache): it notices
// when the credentials change, so that the identity behind them is learnt again.
type watchedCredentials struct {
	aws.CredentialsProvider
	c *Client
}

func (w *watchedCredentials) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, err := w.CredentialsProvider.Retrieve(ctx)
	if err == nil {
		key := creds.AccessKeyID
		if prev := w.c.idSeen.Swap(&key); prev != nil && *prev != key {
			// Learnt off the signing path: OwnIdentity signs a call itself.
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), w.c.opts.Timeout)
				defer cancel()
				_, _ = w.c.OwnIdentity(ctx)
			}()
		}
	}
	return creds, err
}

// OwnIdentity returns who the client's own credentials are. It asks STS (GetCallerIdentity) the
// first time and again after the credentials changed (the SDK refreshed them to another key),
// otherwise it answers from memory.
func (c *Client) OwnIdentity(ctx context.Context) (Identity, error) {
	if c.base.Credentials == nil {
		return Identity{}, &Error{Operation: "GetCallerIdentity", Code: CodeInvalidRequest, Message: "the client has no credentials of its own"}
	}
	creds, err := c.base.Credentials.Retrieve(ctx)
	if err != nil {
		return Identity{}, &Error{Operation: "GetCallerIdentity", Code: CodeUnknown, Message: "the operator's own AWS credentials are not available: " + Redact(err.Error()), Retryable: true, err: err}
	}
	c.idMu.Lock()
	defer c.idMu.Unlock()
	if c.idKey != "" && c.idKey == creds.AccessKeyID {
		return c.id, nil
	}
	id, err := c.GetCallerIdentity(ctx, "", nil)
	if err != nil {
		return Identity{}, err
	}
	id.Source = credentialSource(creds.Source)
	c.id, c.idKey = id, creds.AccessKeyID
	if c.opts.OnIdentity != nil {
		c.opts.OnIdentity(id)
	}
	return id, nil
}

func (c *Client) retryer() aws.Retryer {
	standard := func(o *retry.StandardOptions) {
		o.MaxAttempts = c.opts.MaxAttempts
		o.MaxBackoff = 5 * time.Second
	}
	if c.opts.RetryMode == aws.RetryModeAdaptive {
		return retry.NewAdaptiveMode(func(o *retry.AdaptiveModeOptions) {
			o.StandardOptions = append(o.StandardOptions, standard)
		})
	}
	return retry.NewStandard(standard)
}

// rateLimit waits for the shared limiter before every attempt, after the SDK's retry step and
// before signing, so retries are limited too and a long wait never stales a signature.
func (c *Client) rateLimit(stack *middleware.Stack) error {
	mw := middleware.FinalizeMiddlewareFunc("RolekeeperRateLimit",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if err := c.limiter.Wait(ctx); err != nil {
				return middleware.FinalizeOutput{}, middleware.Metadata{}, &Error{Operation: middleware.GetOperationName(ctx), Code: CodeRateLimitWaiting, Message: "gave up waiting for the client-side STS rate limit (--sts-qps)", Retryable: true, err: err}
			}
			return next.HandleFinalize(ctx, in)
		})
	if err := stack.Finalize.Insert(mw, "Retry", middleware.After); err != nil {
		return stack.Finalize.Add(mw, middleware.Before)
	}
	return nil
}

func withSource(src *Credentials) []func(*awssts.Options) {
	if src == nil {
		return nil
	}
	provider := credentials.NewStaticCredentialsProvider(src.AccessKeyID, src.SecretAccessKey, src.SessionToken)
	return []func(*awssts.Options){func(o *awssts.Options) { o.Credentials = provider }}
}

func (c *Client) region(r string) (string, error) {
	if r == "" {
		r = c.opts.Region
	}
	if r == "" {
		return "", &Error{Operation: "AssumeRole", Code: CodeInvalidRequest, Message: "no AWS region: set spec.region or the operator's --region"}
	}
	return r, nil
}

// invoke runs one operation under the client's timeout, stamps the issue time, classifies the
// error and reports the call to Observe. endpoint is the operator's endpoint override for the
// service, "" when the SDK resolves the regional endpoint of region.
func invoke[T any](ctx context.Context, c *Client, op, region, endpoint string, call func(context.Context) (*T, error)) (*T, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	issuedAt := c.opts.Clock.Now()
	start := time.Now()
	out, err := call(ctx)
	if err != nil {
		err = regionUnknown(op, region, endpoint, err)
	}
	err = Classify(op, err)
	c.observe(op, start, err)
	return out, issuedAt, err
}

// regionUnknown turns a DNS answer that the regional endpoint's host does not exist into
// CodeRegionUnknown: the region name is well formed but no such region exists. With an endpoint
// override the host is the operator's setting, and the error stays a network error.
func regionUnknown(op, region, endpoint string, err error) error {
	var dnsErr *net.DNSError
	if endpoint != "" || !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		return err
	}
	return &Error{Operation: op, Code: CodeRegionUnknown, err: err,
		Message: fmt.Sprintf("the endpoint of region %s (%s) does not exist in DNS: there is no such region in partition %s; set spec.region to a region that exists", region, dnsErr.Name, Partition(region))}
}

func noCredentials(op string) error {
	return &Error{Operation: op, Code: CodeUnknown, Message: "STS answered without credentials", Retryable: true}
}

func (c *Client) observe(op string, start time.Time, err error) {
	if c.opts.Observe == nil {
		return
	}
	code := "OK"
	if err != nil {
		code = Code(err)
	}
	c.opts.Observe(op, code, time.Since(start))
}

func invalid(op string, err error) error {
	return &Error{Operation: op, Code: CodeInvalidRequest, Message: err.Error(), err: err}
}

// AssumeRole calls sts:AssumeRole, signed by source when given (role chaining), otherwise by the
// client's own identity. The request is validated first; an invalid one is never sent.
func (c *Client) AssumeRole(ctx context.Context, req AssumeRoleRequest, source *Credentials) (res *Result, err error) {
	const op = "AssumeRole"
	region, err := c.region(req.Region)
	if err != nil {
		return nil, err
	}
	req.Region = region
	if err := req.Validate(); err != nil {
		return nil, invalid(op, err)
	}
	in := &awssts.AssumeRoleInput{
		RoleArn:         aws.String(req.RoleArn),
		RoleSessionName: aws.String(req.SessionName),
		DurationSeconds: aws.Int32(req.DurationSeconds),
	}
	if req.ExternalID != "" {
		in.ExternalId = aws.String(req.ExternalID)
	}
	if req.SourceIdentity != "" {
		in.SourceIdentity = aws.String(req.SourceIdentity)
	}
	if req.Policy != "" {
		in.Policy = aws.String(req.Policy)
	}
	for _, arn := range req.PolicyArns {
		in.PolicyArns = append(in.PolicyArns, ststypes.PolicyDescriptorType{Arn: aws.String(arn)})
	}
	for _, t := range req.Tags {
		in.Tags = append(in.Tags, ststypes.Tag{Key: aws.String(t.Key), Value: aws.String(t.Value)})
	}
	in.TransitiveTagKeys = append(in.TransitiveTagKeys, req.TransitiveTagKeys...)

	out, issuedAt, err := invoke(ctx, c, op, region, c.opts.Endpoint, func(ctx context.Context) (*awssts.AssumeRoleOutput, error) {
		return c.forRegion(region).AssumeRole(ctx, in, withSource(source)...)
	})
	if err != nil {
		return nil, err
	}
	if out.Credentials == nil {
		return nil, noCredentials(op)
	}
	res = &Result{
		Credentials:      fromSDK(out.Credentials),
		IssuedAt:         issuedAt,
		SourceIdentity:   aws.ToString(out.SourceIdentity),
		PackedPolicySize: out.PackedPolicySize, //nolint:staticcheck // still returned by STS and shown in status as DESIGN asks
		RequestID:        requestID(out.ResultMetadata),
	}
	if u := out.AssumedRoleUser; u != nil {
		res.AssumedRoleArn, res.AssumedRoleID = aws.ToString(u.Arn), aws.ToString(u.AssumedRoleId)
	}
	return res, nil
}

// AssumeRoot calls sts:AssumeRoot on the request's regional endpoint.
func (c *Client) AssumeRoot(ctx context.Context, req AssumeRootRequest, source *Credentials) (*Result, error) {
	const op = "AssumeRoot"
	if req.Region == "" {
		req.Region = c.opts.Region
	}
	if err := req.Validate(); err != nil {
		return nil, invalid(op, err)
	}
	in := &awssts.AssumeRootInput{
		TargetPrincipal: aws.String(req.TargetPrincipal),
		TaskPolicyArn:   &ststypes.PolicyDescriptorType{Arn: aws.String(req.TaskPolicyArn)},
		DurationSeconds: aws.Int32(req.DurationSeconds),
	}
	out, issuedAt, err := invoke(ctx, c, op, req.Region, c.opts.Endpoint, func(ctx context.Context) (*awssts.AssumeRootOutput, error) {
		return c.forRegion(req.Region).AssumeRoot(ctx, in, withSource(source)...)
	})
	if err != nil {
		return nil, err
	}
	if out.Credentials == nil {
		return nil, noCredentials(op)
	}
	return &Result{
		Credentials:    fromSDK(out.Credentials),
		IssuedAt:       issuedAt,
		SourceIdentity: aws.ToString(out.SourceIdentity),
		RequestID:      requestID(out.ResultMetadata),
	}, nil
}

// GetCallerIdentity returns who the given credentials (or the client's own) are.
func (c *Client) GetCallerIdentity(ctx context.Context, region string, source *Credentials) (Identity, error) {
	const op = "GetCallerIdentity"
	region, err := c.region(region)
	if err != nil {
		return Identity{}, err
	}
	out, _, err := invoke(ctx, c, op, region, c.opts.Endpoint, func(ctx context.Context) (*awssts.GetCallerIdentityOutput, error) {
		return c.forRegion(region).GetCallerIdentity(ctx, &awssts.GetCallerIdentityInput{}, withSource(source)...)
	})
	if err != nil {
		return Identity{}, err
	}
	return Identity{Account: aws.ToString(out.Account), Arn: aws.ToString(out.Arn), UserID: aws.ToString(out.UserId)}, nil
}

func fromSDK(c *ststypes.Credentials) Credentials {
	return Credentials{
		AccessKeyID:     aws.ToString(c.AccessKeyId),
		SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken:    aws.ToString(c.SessionToken),
		Expiration:      aws.ToTime(c.Expiration),
	}
}

func requestID(md middleware.Metadata) string {
	id, _ := awsmiddleware.GetRequestIDMetadata(md)
	return id
}
