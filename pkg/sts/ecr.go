package sts

import (
	"context"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
)

// ECRRequest asks Amazon ECR for a registry login token.
type ECRRequest struct {
	// Region of the registries.
	Region string
	// RegistryIDs are the accounts whose registries the login is for; empty means the caller's
	// own account.
	RegistryIDs []string
}

var registryIDRe = regexp.MustCompile(`^[0-9]{12}$`)

// Validate checks the request against ECR's documented limits.
func (r ECRRequest) Validate() error {
	if !ValidRegion(r.Region) {
		return fmt.Errorf("ecr region %q is not an AWS region code", r.Region)
	}
	if len(r.RegistryIDs) > 10 {
		return fmt.Errorf("at most 10 ECR registry IDs, got %d", len(r.RegistryIDs))
	}
	for _, id := range r.RegistryIDs {
		if !registryIDRe.MatchString(id) {
			return fmt.Errorf("ECR registry ID %q is not a 12-digit account ID", id)
		}
	}
	return nil
}

// ECRLogin is one registry login from GetAuthorizationToken.
type ECRLogin struct {
	// Server is the registry host without scheme.
	Server    string
	Username  string
	Password  string
	ExpiresAt time.Time
}

// String hides the password.
func (l ECRLogin) String() string {
	return fmt.Sprintf("ECRLogin{Server: %s, Username: %s, ExpiresAt: %s, password: [REDACTED]}", l.Server, l.Username, l.ExpiresAt.UTC().Format(time.RFC3339))
}

// GoString hides the password in %#v too.
func (l ECRLogin) GoString() string { return l.String() }

// Format hides the password in every verb.
func (l ECRLogin) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(l.String())) }

func (c *Client) ecrFor(region string) *ecr.Client {
	return regionalClient(c.ecr, region, func() *ecr.Client {
		return ecr.NewFromConfig(c.base, func(o *ecr.Options) {
			o.Region = region
			if c.opts.ECREndpoint != "" {
				o.BaseEndpoint = aws.String(c.opts.ECREndpoint)
			}
			o.EndpointOptions.UseFIPSEndpoint, o.EndpointOptions.UseDualStackEndpoint = c.endpointVariants()
		})
	})
}

// ECRAuthorizationToken calls ecr:GetAuthorizationToken signed by creds (the assumed session)
// and returns one login per registry. Calls share the client's rate limit with STS.
func (c *Client) ECRAuthorizationToken(ctx context.Context, req ECRRequest, creds Credentials) ([]ECRLogin, error) {
	const op = "GetAuthorizationToken"
	if err := req.Validate(); err != nil {
		return nil, invalid(op, err)
	}
	in := &ecr.GetAuthorizationTokenInput{RegistryIds: req.RegistryIDs} //nolint:staticcheck // still honoured: one login per registry ID
	provider := credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken)
	out, _, err := invoke(ctx, c, op, req.Region, c.opts.ECREndpoint, func(ctx context.Context) (*ecr.GetAuthorizationTokenOutput, error) {
		return c.ecrFor(req.Region).GetAuthorizationToken(ctx, in, func(o *ecr.Options) { o.Credentials = provider })
	})
	if err != nil {
		return nil, err
	}
	if len(out.AuthorizationData) == 0 {
		return nil, &Error{Operation: op, Code: CodeUnknown, Message: "ECR answered without authorization data", Retryable: true}
	}
	logins := make([]ECRLogin, 0, len(out.AuthorizationData))
	for _, d := range out.AuthorizationData {
		raw, derr := base64.StdEncoding.DecodeString(aws.ToString(d.AuthorizationToken))
		user, pass, ok := strings.Cut(string(raw), ":")
		server := strings.TrimPrefix(strings.TrimPrefix(aws.ToString(d.ProxyEndpoint), "https://"), "http://")
		if derr != nil || !ok || user == "" || pass == "" || server == "" || d.ExpiresAt == nil {
			return nil, &Error{Operation: op, Code: CodeUnknown, Message: "ECR answered with an authorization token that is not base64 user:password, or without a registry or expiry", Retryable: true}
		}
		logins = append(logins, ECRLogin{Server: strings.TrimSuffix(server, "/"), Username: user, Password: pass, ExpiresAt: *d.ExpiresAt})
	}
	return logins, nil
}
