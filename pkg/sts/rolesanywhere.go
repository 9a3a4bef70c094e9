package sts

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
)

// RolesAnywhereProviderName is the Source of credentials that IAM Roles Anywhere issued.
const RolesAnywhereProviderName = "RolesAnywhere"

// RolesAnywhere is the operator's own identity through IAM Roles Anywhere: an X.509 certificate
// and its private key, read from files (a mounted Secret that cert-manager renews), sign
// CreateSession, which returns a session of RoleArn. The files are read again at every refresh,
// so a renewed certificate is used without a restart.
type RolesAnywhere struct {
	// TrustAnchorArn, ProfileArn and RoleArn name the trust anchor the certificate chains to, the
	// profile that allows the role, and the role. Required.
	TrustAnchorArn, ProfileArn, RoleArn string
	// CertificateFile holds the end-entity certificate in PEM, optionally followed by
	// intermediate CA certificates (as cert-manager's tls.crt). Required.
	CertificateFile string
	// PrivateKeyFile holds the certificate's RSA or ECDSA private key in PEM (PKCS #8, PKCS #1 or
	// SEC 1). Required.
	PrivateKeyFile string
	// ChainFile, optional, holds further intermediate CA certificates in PEM.
	ChainFile string
	// SessionDuration is the session requested: 15 minutes to 12 hours, at most what the profile
	// allows. Default one hour.
	SessionDuration time.Duration
	// Endpoint overrides the Roles Anywhere endpoint URL (tests, a VPC endpoint). Empty: the
	// regional endpoint of the trust anchor's region.
	Endpoint string
}

var (
	trustAnchorArnRe = regexp.MustCompile(`^arn:aws[a-z-]*:rolesanywhere:([a-z0-9-]+):[0-9]{12}:trust-anchor/[0-9a-f-]+$`)
	profileArnRe     = regexp.MustCompile(`^arn:aws[a-z-]*:rolesanywhere:([a-z0-9-]+):[0-9]{12}:profile/[0-9a-f-]+$`)
	iamRoleArnRe     = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\x21-\x7e]+$`)
)

// Validate names each missing or unusable piece: the ARNs, the session duration, and the
// certificate and key files, which must be readable, parse, match each other and be valid now.
func (ra RolesAnywhere) Validate(now time.Time) error {
	var errs []error
	anchor := trustAnchorArnRe.FindStringSubmatch(ra.TrustAnchorArn)
	profile := profileArnRe.FindStringSubmatch(ra.ProfileArn)
	switch {
	case ra.TrustAnchorArn == "":
		errs = append(errs, errors.New("the trust anchor ARN is missing (--roles-anywhere-trust-anchor-arn)"))
	case anchor == nil:
		errs = append(errs, fmt.Errorf("trust anchor ARN %q is not of the form arn:aws:rolesanywhere:<region>:<account>:trust-anchor/<id>", ra.TrustAnchorArn))
	}
	switch {
	case ra.ProfileArn == "":
		errs = append(errs, errors.New("the profile ARN is missing (--roles-anywhere-profile-arn)"))
	case profile == nil:
		errs = append(errs, fmt.Errorf("profile ARN %q is not of the form arn:aws:rolesanywhere:<region>:<account>:profile/<id>", ra.ProfileArn))
	}
	if anchor != nil && profile != nil && anchor[1] != profile[1] {
		errs = append(errs, fmt.Errorf("the trust anchor (%s) and the profile (%s) are in different regions", anchor[1], profile[1]))
	}
	switch {
	case ra.RoleArn == "":
		errs = append(errs, errors.New("the role ARN is missing (--roles-anywhere-role-arn)"))
	case !iamRoleArnRe.MatchString(ra.RoleArn):
		errs = append(errs, fmt.Errorf("role ARN %q is not an IAM role ARN such as arn:aws:iam::111122223333:role/rolekeeper", ra.RoleArn))
	}
	if d := ra.SessionDuration; d != 0 && (d < 15*time.Minute || d > 12*time.Hour) {
		errs = append(errs, fmt.Errorf("the Roles Anywhere session duration must be 15m to 12h, got %v", d))
	}
	switch {
	case ra.CertificateFile == "":
		errs = append(errs, errors.New("the certificate file is missing (--roles-anywhere-certificate)"))
	case ra.PrivateKeyFile == "":
		errs = append(errs, errors.New("the private key file is missing (--roles-anywhere-private-key)"))
	default:
		if ck, err := ra.readCertificate(); err != nil {
			errs = append(errs, err)
		} else if now.After(ck.cert.NotAfter) || now.Before(ck.cert.NotBefore) {
			errs = append(errs, fmt.Errorf("the certificate in %s is valid from %s to %s, not now", ra.CertificateFile, ck.cert.NotBefore.UTC().Format(time.RFC3339), ck.cert.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	return errors.Join(errs...)
}

func (ra RolesAnywhere) sessionSeconds() int {
	if ra.SessionDuration == 0 {
		return 3600
	}
	return int(ra.SessionDuration / time.Second)
}

// LoadRolesAnywhere builds a Client whose own credentials come from IAM Roles Anywhere, cached
// by the SDK and refreshed OwnExpiryWindow before they expire, as LoadDefault's.
func LoadRolesAnywhere(ctx context.Context, opts Options, ra RolesAnywhere) (*Client, error) {
	if err := ra.Validate(time.Now()); err != nil {
		return nil, err
	}
	provider, err := newRolesAnywhereProvider(ra)
	if err != nil {
		return nil, err
	}
	return LoadDefault(ctx, opts, config.WithCredentialsProvider(provider))
}

// certificateKey is one consistent read of the certificate, its chain and its key.
type certificateKey struct {
	cert  *x509.Certificate
	chain []*x509.Certificate
	key   crypto.Signer
}

// readCertificate reads the certificate, chain and key files. A Secret volume replaces its files
// together, but two reads can straddle a renewal (a new certificate with the old key); a key
// that does not match is read again before it counts as an error.
func (ra RolesAnywhere) readCertificate() (*certificateKey, error) {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		var ck *certificateKey
		if ck, err = ra.readOnce(); err == nil {
			return ck, nil
		}
	}
	return nil, err
}

// maxPEMFile bounds what one certificate or key file may make the operator read.
const maxPEMFile = 1 << 20

func readPEMFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPEMFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxPEMFile)
	}
	return b, nil
}

func parseCertificates(name string, data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		if block, data = pem.Decode(data); block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: a certificate does not parse: %w", name, err)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

func (ra RolesAnywhere) readOnce() (*certificateKey, error) {
	certPEM, err := readPEMFile(ra.CertificateFile)
	if err != nil {
		return nil, fmt.Errorf("reading the Roles Anywhere certificate: %w", err)
	}
	certs, err := parseCertificates(ra.CertificateFile, certPEM)
	if err != nil {
		return nil, err
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", ra.CertificateFile)
	}
	ck := &certificateKey{cert: certs[0], chain: certs[1:]}
	if ra.ChainFile != "" {
		chainPEM, err := readPEMFile(ra.ChainFile)
		if err != nil {
			return nil, fmt.Errorf("reading the Roles Anywhere certificate chain: %w", err)
		}
		chain, err := parseCertificates(ra.ChainFile, chainPEM)
		if err != nil {
			return nil, err
		}
		ck.chain = append(ck.chain, chain...)
	}
	keyPEM, err := readPEMFile(ra.PrivateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("reading the Roles Anywhere private key: %w", err)
	}
	if ck.key, err = parsePrivateKey(ra.PrivateKeyFile, keyPEM); err != nil {
		return nil, err
	}
	if !publicKeysEqual(ck.key.Public(), ck.cert.PublicKey) {
		return nil, fmt.Errorf("the private key in %s does not belong to the certificate in %s", ra.PrivateKeyFile, ra.CertificateFile)
	}
	return ck, nil
}

func parsePrivateKey(name string, data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		if block, data = pem.Decode(data); block == nil {
			return nil, fmt.Errorf("%s holds no PEM private key", name)
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: the private key does not parse: %w", name, err)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case *ecdsa.PrivateKey:
			return k, nil
		}
		return nil, fmt.Errorf("%s: Roles Anywhere signs with RSA or ECDSA keys only", name)
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// signingAlgorithm is the SigV4-X509 algorithm of the key.
func (ck *certificateKey) signingAlgorithm() string {
	if _, ok := ck.key.(*ecdsa.PrivateKey); ok {
		return "AWS4-X509-ECDSA-SHA256"
	}
	return "AWS4-X509-RSA-SHA256"
}
