package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rolekeeper/rolekeeper/pkg/sts"
)

// Identity kinds of --identity.
const (
	identityDefault       = "default"
	identityWebIdentity   = "web-identity"
	identityRolesAnywhere = "roles-anywhere"
)

// rolesAnywhereDir is where the chart and config/ mount the Roles Anywhere certificate Secret.
const rolesAnywhereDir = "/var/run/secrets/rolekeeper.io/roles-anywhere/"

// identityFlags choose the operator's own AWS identity and configure it.
type identityFlags struct {
	kind string
	ra   sts.RolesAnywhere
}

func (i *identityFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&i.kind, "identity", identityDefault, "The operator's own AWS identity: default (the SDK's chain: environment, shared files, web identity, EKS Pod Identity, instance metadata), web-identity (AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE, required and checked at start) or roles-anywhere (an X.509 certificate through IAM Roles Anywhere).")
	fs.StringVar(&i.ra.TrustAnchorArn, "roles-anywhere-trust-anchor-arn", "", "With --identity=roles-anywhere: the trust anchor the certificate chains to.")
	fs.StringVar(&i.ra.ProfileArn, "roles-anywhere-profile-arn", "", "With --identity=roles-anywhere: the profile that allows the role.")
	fs.StringVar(&i.ra.RoleArn, "roles-anywhere-role-arn", "", "With --identity=roles-anywhere: the operator's role.")
	fs.StringVar(&i.ra.CertificateFile, "roles-anywhere-certificate", rolesAnywhereDir+"tls.crt", "With --identity=roles-anywhere: PEM file of the certificate, optionally followed by intermediates; read again at each refresh, so a renewed certificate is used without a restart.")
	fs.StringVar(&i.ra.PrivateKeyFile, "roles-anywhere-private-key", rolesAnywhereDir+"tls.key", "With --identity=roles-anywhere: PEM file of the certificate's RSA or ECDSA private key.")
	fs.StringVar(&i.ra.ChainFile, "roles-anywhere-chain", "", "With --identity=roles-anywhere: optional PEM file of further intermediate CA certificates.")
	fs.DurationVar(&i.ra.SessionDuration, "roles-anywhere-session-duration", time.Hour, "With --identity=roles-anywhere: the session requested, 15m to 12h, at most what the profile allows.")
	fs.StringVar(&i.ra.Endpoint, "roles-anywhere-endpoint", "", "With --identity=roles-anywhere: override the Roles Anywhere endpoint URL. Empty: the trust anchor's regional endpoint.")
}

// validate refuses an identity that cannot be used, naming what is missing.
func (i *identityFlags) validate() error {
	switch i.kind {
	case identityDefault, identityWebIdentity, identityRolesAnywhere:
	default:
		return fmt.Errorf("--identity must be default, web-identity or roles-anywhere, got %q", i.kind)
	}
	if i.kind != identityRolesAnywhere && (i.ra.TrustAnchorArn != "" || i.ra.ProfileArn != "" || i.ra.RoleArn != "" || i.ra.Endpoint != "") {
		return errors.New("the --roles-anywhere-* flags need --identity=roles-anywhere")
	}
	if i.kind == identityRolesAnywhere {
		if i.ra.Endpoint != "" && !strings.HasPrefix(i.ra.Endpoint, "https://") && !strings.HasPrefix(i.ra.Endpoint, "http://") {
			return fmt.Errorf("--roles-anywhere-endpoint must be a URL starting with https://, got %q", i.ra.Endpoint)
		}
		if err := i.ra.Validate(time.Now()); err != nil {
			return fmt.Errorf("--identity=roles-anywhere cannot be used: %w", err)
		}
		return nil
	}
	// The SDK's chain takes web identity from these two variables; a token file that cannot be
	// read would only fail at the first call, so it is checked here.
	roleArn, tokenFile := os.Getenv("AWS_ROLE_ARN"), os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE")
	if i.kind == identityDefault && roleArn == "" && tokenFile == "" {
		return nil
	}
	var errs []error
	if os.Getenv("AWS_ACCESS_KEY_ID") != "" {
		errs = append(errs, errors.New("AWS_ACCESS_KEY_ID is set too, and the SDK would use those static keys instead"))
	}
	if roleArn == "" {
		errs = append(errs, errors.New("AWS_ROLE_ARN (the operator's role) is not set"))
	}
	if tokenFile == "" {
		errs = append(errs, errors.New("AWS_WEB_IDENTITY_TOKEN_FILE (the projected ServiceAccount token) is not set"))
	} else if b, err := os.ReadFile(tokenFile); err != nil {
		errs = append(errs, fmt.Errorf("the web identity token file (AWS_WEB_IDENTITY_TOKEN_FILE) cannot be read: %w; is the projected ServiceAccount token volume mounted?", err))
	} else if len(strings.TrimSpace(string(b))) == 0 {
		errs = append(errs, fmt.Errorf("the web identity token file %s (AWS_WEB_IDENTITY_TOKEN_FILE) is empty", tokenFile))
	}
	if len(errs) > 0 {
		return fmt.Errorf("the web identity cannot be used: %w", errors.Join(errs...))
	}
	return nil
}

// load builds the STS client on the chosen identity.
func (i *identityFlags) load(ctx context.Context, opts sts.Options) (*sts.Client, error) {
	if i.kind == identityRolesAnywhere {
		return sts.LoadRolesAnywhere(ctx, opts, i.ra)
	}
	return sts.LoadDefault(ctx, opts)
}
