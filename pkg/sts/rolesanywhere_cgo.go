//go:build cgo

package sts

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	helper "github.com/aws/rolesanywhere-credential-helper/aws_signing_helper"
)

// rolesAnywhereProvider gets credentials from IAM Roles Anywhere's CreateSession, signed by AWS's
// own library (rolesanywhere-credential-helper) with the certificate read at each refresh. The
// library needs cgo (it links PKCS #11 support), hence the build constraint.
type rolesAnywhereProvider struct {
	ra RolesAnywhere
	// inflight holds one token while a CreateSession runs. The library's call takes no context,
	// so a call abandoned at the caller's deadline runs on; the next one waits for it instead of
	// piling up.
	inflight chan struct{}
}

func newRolesAnywhereProvider(ra RolesAnywhere) (aws.CredentialsProvider, error) {
	return &rolesAnywhereProvider{ra: ra, inflight: make(chan struct{}, 1)}, nil
}

func (p *rolesAnywhereProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	select {
	case p.inflight <- struct{}{}:
	case <-ctx.Done():
		return aws.Credentials{}, fmt.Errorf("waiting for an earlier Roles Anywhere CreateSession: %w", ctx.Err())
	}
	// Read after waiting, so that a call queued behind a slow one signs with the newest files.
	ck, err := p.ra.readCertificate()
	if err != nil {
		<-p.inflight
		return aws.Credentials{}, err
	}
	type result struct {
		out helper.CredentialProcessOutput
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-p.inflight }()
		defer func() {
			if r := recover(); r != nil {
				done <- result{err: fmt.Errorf("%v", r)}
			}
		}()
		opts := helper.CredentialsOpts{
			TrustAnchorArnStr: p.ra.TrustAnchorArn,
			ProfileArnStr:     p.ra.ProfileArn,
			RoleArn:           p.ra.RoleArn,
			SessionDuration:   p.ra.sessionSeconds(),
			Endpoint:          p.ra.Endpoint,
			Version:           "rolekeeper",
		}
		out, err := helper.GenerateCredentials(&opts, (*certificateSigner)(ck), ck.signingAlgorithm())
		done <- result{out, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		return aws.Credentials{}, fmt.Errorf("IAM Roles Anywhere CreateSession: %w", ctx.Err())
	}
	if r.err != nil {
		return aws.Credentials{}, fmt.Errorf("IAM Roles Anywhere CreateSession with the certificate of serial number %x: %s", ck.cert.SerialNumber, Redact(r.err.Error()))
	}
	expires, err := time.Parse(time.RFC3339, r.out.Expiration)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("IAM Roles Anywhere answered an expiration that is not RFC 3339: %q", r.out.Expiration)
	}
	return aws.Credentials{
		AccessKeyID: r.out.AccessKeyId, SecretAccessKey: r.out.SecretAccessKey, SessionToken: r.out.SessionToken,
		CanExpire: true, Expires: expires, Source: RolesAnywhereProviderName,
	}, nil
}

// certificateSigner is the library's Signer over one read of the certificate and key. The
// library passes the string to sign, not its digest: Sign hashes it first.
type certificateSigner certificateKey

func (s *certificateSigner) Public() crypto.PublicKey { return s.key.Public() }

func (s *certificateSigner) Sign(rand io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	h := opts.HashFunc().New()
	h.Write(msg)
	return s.key.Sign(rand, h.Sum(nil), opts)
}

func (s *certificateSigner) Certificate() (*x509.Certificate, error) { return s.cert, nil }

func (s *certificateSigner) CertificateChain() ([]*x509.Certificate, error) {
	if len(s.chain) == 0 {
		return nil, nil
	}
	return s.chain, nil
}

func (s *certificateSigner) Close() {}
