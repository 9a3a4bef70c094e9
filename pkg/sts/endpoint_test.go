package sts_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/rolekeeper/rolekeeper/pkg/sts"
)

var errStop = errors.New("recorded; not sent")

// hostCalled returns the host a call would reach, recorded by a transport that sends nothing.
func hostCalled(t *testing.T, mod func(*sts.Options), call func(*sts.Client)) string {
	t.Helper()
	var host string
	cl := newClient(t, "", func(o *sts.Options) {
		o.MaxAttempts = 1
		o.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			host = r.URL.Host
			return nil, errStop
		})}
		if mod != nil {
			mod(o)
		}
	})
	call(cl)
	return host
}

// The endpoint options reach the SDK's resolver: the host each client would call, recorded by a
// transport that sends nothing.
func TestEndpointOptions(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*sts.Options)
		req  string
		want string
	}{
		{"regional by default", nil, "eu-west-1", "sts.eu-west-1.amazonaws.com"},
		{"us-east-1 is regional too", nil, "us-east-1", "sts.us-east-1.amazonaws.com"},
		{"FIPS", func(o *sts.Options) { o.UseFIPS = true }, "us-east-1", "sts-fips.us-east-1.amazonaws.com"},
		{"dual-stack", func(o *sts.Options) { o.UseDualStack = true }, "eu-west-1", "sts.eu-west-1.api.aws"},
		{"China partition", nil, "cn-north-1", "sts.cn-north-1.amazonaws.com.cn"},
		{"explicit endpoint wins", func(o *sts.Options) { o.Endpoint = "https://vpce-1234.sts.eu-west-1.vpce.amazonaws.com" }, "eu-west-1", "vpce-1234.sts.eu-west-1.vpce.amazonaws.com"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			host := hostCalled(t, c.mod, func(cl *sts.Client) {
				req := fullRequest()
				req.Region = c.req
				_, _ = cl.AssumeRole(context.Background(), req, nil)
			})
			if host != c.want {
				t.Errorf("called %q, want %q", host, c.want)
			}
		})
	}
}

// ECR calls follow the same options, with their own endpoint override.
func TestECREndpointOptions(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*sts.Options)
		want string
	}{
		{"regional by default", nil, "api.ecr.eu-west-1.amazonaws.com"},
		{"the STS override does not apply", func(o *sts.Options) { o.Endpoint = "https://sts.example.com" }, "api.ecr.eu-west-1.amazonaws.com"},
		{"explicit ECR endpoint wins", func(o *sts.Options) { o.ECREndpoint = "https://vpce-1234.api.ecr.eu-west-1.vpce.amazonaws.com" }, "vpce-1234.api.ecr.eu-west-1.vpce.amazonaws.com"},
		{"FIPS", func(o *sts.Options) { o.UseFIPS = true }, "api.ecr-fips.eu-west-1.amazonaws.com"},
		{"dual-stack", func(o *sts.Options) { o.UseDualStack = true }, "ecr.eu-west-1.api.aws"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			host := hostCalled(t, c.mod, func(cl *sts.Client) {
				_, _ = cl.ECRAuthorizationToken(context.Background(), sts.ECRRequest{Region: "eu-west-1"}, sts.Credentials{AccessKeyID: "ASIAEXAMPLE", SecretAccessKey: "s", SessionToken: "t"})
			})
			if host != c.want {
				t.Errorf("called %q, want %q", host, c.want)
			}
		})
	}
}
