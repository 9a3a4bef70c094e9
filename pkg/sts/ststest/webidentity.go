package ststest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// OIDCProvider is an IAM OpenID Connect identity provider: the issuer whose tokens
// AssumeRoleWithWebIdentity accepts, for the audiences (client IDs) registered with it.
type OIDCProvider struct {
	// URL is the issuer exactly as tokens name it (iss), for example the test API server's
	// --service-account-issuer. Its /.well-known/openid-configuration and the JWKS it points
	// to are fetched anonymously, as IAM fetches them.
	URL string
	// ClientIDs are the accepted audiences (IAM's client ID list), for example
	// sts.amazonaws.com.
	ClientIDs []string
	// CAPEM holds the certificates trusted for the issuer's TLS (a test API server's CA). Empty:
	// the system's roots.
	CAPEM []byte `json:",omitempty"`
}

// WebIdentityTrust is the part of a role's trust policy that admits web identities:
// Principal {"Federated": <the provider>} with StringEquals on <provider>:aud and StringLike on
// <provider>:sub.
type WebIdentityTrust struct {
	// Issuer names the trusted provider by its URL.
	Issuer string
	// Audience, when set, must be the token's audience (<provider>:aud).
	Audience string `json:",omitempty"`
	// Subjects are path.Match patterns of the token's subject (<provider>:sub), for example
	// system:serviceaccount:rolekeeper-system:rolekeeper; empty admits every subject.
	Subjects []string `json:",omitempty"`
}

// oidcVerifier is a provider with its discovery document fetched and its keys cached.
type oidcVerifier struct {
	provider OIDCProvider
	client   *http.Client
	verifier *oidc.IDTokenVerifier
}

// AddOIDCProvider registers an OpenID Connect provider, as IAM's CreateOpenIDConnectProvider.
// Its discovery document is fetched at the first token it has to verify.
func (s *Server) AddOIDCProvider(p OIDCProvider) error {
	client := &http.Client{Timeout: 10 * time.Second}
	if len(p.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(p.CAPEM) {
			return errors.New("CAPEM holds no PEM certificate")
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	if u, err := url.Parse(p.URL); err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("provider URL %q must be an https URL", p.URL)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.oidc[p.URL] = &oidcVerifier{provider: p, client: client}
	return nil
}

// verifierFor returns the verifier of a registered issuer, fetching its discovery document the
// first time. The key set behind it refetches the JWKS when a token names a key it does not
// hold, so a rotated signing key is picked up as IAM picks it up.
func (s *Server) verifierFor(ctx context.Context, issuer string) (*oidcVerifier, *apiError) {
	s.mu.Lock()
	v, ok := s.oidc[issuer]
	s.mu.Unlock()
	if !ok {
		return nil, &apiError{http.StatusBadRequest, "InvalidIdentityToken", "No OpenIDConnect provider found in your account for " + issuer}
	}
	s.mu.Lock()
	verifier := v.verifier
	s.mu.Unlock()
	if verifier != nil {
		return v, nil
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, v.client), 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		return nil, &apiError{http.StatusBadRequest, "IDPCommunicationError", "Couldn't retrieve verification key from your identity provider, please reference AssumeRoleWithWebIdentity documentation for requirements"}
	}
	// Audience and expiry are checked by the caller, to answer with AWS's codes; the key set
	// keeps using the client it was built with.
	verifier = p.VerifierContext(oidc.ClientContext(context.Background(), v.client), &oidc.Config{SkipClientIDCheck: true, SkipExpiryCheck: true})
	s.mu.Lock()
	v.verifier = verifier
	s.mu.Unlock()
	return v, nil
}

// webIdentityClaims are the claims read from a token after its signature is verified.
type webIdentityClaims struct {
	Subject  string          `json:"sub"`
	Audience json.RawMessage `json:"aud"`
	Expiry   int64           `json:"exp"`
	IssuedAt int64           `json:"iat"`
	ID       string          `json:"jti"`
}

func (c webIdentityClaims) audiences() []string {
	var many []string
	if json.Unmarshal(c.Audience, &many) == nil {
		return many
	}
	var one string
	if json.Unmarshal(c.Audience, &one) == nil && one != "" {
		return []string{one}
	}
	return nil
}

// unverifiedIssuer reads the iss claim of a compact JWT without verifying it, to pick the
// provider whose keys will verify it.
func unverifiedIssuer(token string) (string, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", false
	}
	var claims struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Issuer == "" {
		return "", false
	}
	return claims.Issuer, true
}

// maxWebIdentityToken is the largest token AWS accepts (WebIdentityToken, 4-20000 characters).
const maxWebIdentityToken = 20000

// assumeRoleWithWebIdentity answers an unsigned AssumeRoleWithWebIdentity call: the token's
// signature is verified against its issuer's published keys, then its issuer, audience, expiry
// and subject, then the role's trust rule.
func (s *Server) assumeRoleWithWebIdentity(ctx context.Context, form url.Values, call *Call) (any, *apiError) {
	readAssumeRole(form, call)
	token := form.Get("WebIdentityToken")
	if n := len(token); n < 4 || n > maxWebIdentityToken {
		return nil, validation("1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length between 4 and 20000")
	}
	if aerr := validateAssumeRole(call, false); aerr != nil {
		return nil, aerr
	}
	issuer, ok := unverifiedIssuer(token)
	if !ok {
		return nil, &apiError{http.StatusBadRequest, "InvalidIdentityToken", "The web identity token provided could not be validated: it is not a JWT with an iss claim."}
	}
	v, aerr := s.verifierFor(ctx, issuer)
	if aerr != nil {
		return nil, aerr
	}
	idt, err := v.verifier.Verify(ctx, token)
	if err != nil {
		return nil, &apiError{http.StatusBadRequest, "InvalidIdentityToken", "The web identity token provided could not be validated: its signature does not verify with the provider's keys."}
	}
	var claims webIdentityClaims
	if err := idt.Claims(&claims); err != nil {
		return nil, &apiError{http.StatusBadRequest, "InvalidIdentityToken", "The web identity token provided could not be validated."}
	}
	call.Caller, call.Subject, call.TokenID = issuer, claims.Subject, claims.ID
	auds := claims.audiences()
	if len(auds) == 0 {
		return nil, &apiError{http.StatusBadRequest, "InvalidIdentityToken", "Missing a required claim: aud"}
	}
	accepted := ""
	for _, a := range auds {
		if slices.Contains(v.provider.ClientIDs, a) {
			accepted = a
			break
		}
	}
	if accepted == "" {
		return nil, &apiError{http.StatusBadRequest, "InvalidIdentityToken", "Incorrect token audience"}
	}
	// The token's lifetime is divided by TimeScale like every lifetime the emulator grants, so
	// a short-lived test run sees tokens expire and be replaced.
	now := s.opts.Clock.Now()
	lifetime := time.Duration(float64(claims.Expiry-claims.IssuedAt) * float64(time.Second) / s.opts.TimeScale)
	expires := time.Unix(claims.IssuedAt, 0).Add(lifetime)
	if claims.Expiry == 0 || !now.Before(expires) {
		return nil, &apiError{http.StatusBadRequest, "ExpiredTokenException", fmt.Sprintf("Token expired: current date/time %d must be before the expiration date/time %d", now.Unix(), expires.Unix())}
	}
	rule, known := s.rule(call.RoleArn)
	if (s.opts.StrictRoles && !known) || rule.Deny || !rule.admitsWebIdentity(issuer, accepted, claims.Subject) {
		return nil, &apiError{http.StatusForbidden, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"}
	}
	if max := rule.MaxSessionDuration; max > 0 && call.DurationSeconds > max {
		return nil, validation("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
	}
	sess := roleSession(call.RoleArn, call.SessionName)
	s.issue(sess, call.DurationSeconds)
	call.IssuedAccessKey = sess.accessKeyID
	return assumeRoleWithWebIdentityResult{
		Credentials:                 credentialsXML(sess),
		AssumedRoleUser:             assumedRoleUserXML{Arn: sess.arn, AssumedRoleID: sess.userID},
		SubjectFromWebIdentityToken: claims.Subject,
		Audience:                    accepted,
		Provider:                    strings.TrimPrefix(issuer, "https://"),
		PackedPolicySize:            packedPolicySize(call),
	}, nil
}

// admitsWebIdentity applies the rule's WebIdentity trust; a rule without one trusts every
// registered provider, like the zero RoleRule trusts every caller.
func (r RoleRule) admitsWebIdentity(issuer, audience, subject string) bool {
	t := r.WebIdentity
	if t == nil {
		return true
	}
	if t.Issuer != issuer || (t.Audience != "" && t.Audience != audience) {
		return false
	}
	if len(t.Subjects) == 0 {
		return true
	}
	for _, pat := range t.Subjects {
		if m, _ := path.Match(pat, subject); m {
			return true
		}
	}
	return false
}

// roleSession is a new session of a role, not yet issued.
func roleSession(roleArn, sessionName string) *session {
	roleName := path.Base(strings.SplitN(roleArn, ":role/", 2)[1])
	account := accountOf(roleArn)
	return &session{
		arn:     fmt.Sprintf("arn:%s:sts::%s:assumed-role/%s/%s", partitionOf(roleArn), account, roleName, sessionName),
		userID:  "AROA" + stableID(roleArn, 17) + ":" + sessionName,
		account: account,
		roleArn: roleArn,
	}
}

type assumeRoleWithWebIdentityResult struct {
	XMLName                     xml.Name           `xml:"AssumeRoleWithWebIdentityResult"`
	SubjectFromWebIdentityToken string             `xml:"SubjectFromWebIdentityToken"`
	Audience                    string             `xml:"Audience"`
	AssumedRoleUser             assumedRoleUserXML `xml:"AssumedRoleUser"`
	Credentials                 credentialsDoc     `xml:"Credentials"`
	Provider                    string             `xml:"Provider"`
	PackedPolicySize            int32              `xml:"PackedPolicySize"`
}
