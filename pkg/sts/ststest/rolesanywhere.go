package ststest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"
)

// IAM Roles Anywhere's CreateSession (REST and JSON, POST /sessions), signed with the private key
// of an X.509 certificate instead of an access key: the emulator checks that signature, the
// certificate's chain to a trust anchor, its validity and revocation, the profile and the role,
// and issues role-session credentials it then accepts for STS calls.

// TrustAnchor is a Roles Anywhere trust anchor: the CA certificates that end-entity certificates
// must chain to.
type TrustAnchor struct {
	// Arn, for example arn:aws:rolesanywhere:us-east-1:111122223333:trust-anchor/<id>.
	Arn string
	// CAPEM holds the anchor's CA certificates (a certificate bundle source).
	CAPEM []byte
	// Disabled refuses every session through the anchor.
	Disabled bool `json:",omitempty"`
}

// RolesAnywhereProfile is a Roles Anywhere profile: the roles a session may assume and the
// longest session it grants.
type RolesAnywhereProfile struct {
	// Arn, for example arn:aws:rolesanywhere:us-east-1:111122223333:profile/<id>.
	Arn string
	// RoleArns are the roles the profile allows.
	RoleArns []string
	// DurationSeconds is the longest session the profile grants; default 3600, as AWS's.
	DurationSeconds int32 `json:",omitempty"`
	// Disabled refuses every session through the profile.
	Disabled bool `json:",omitempty"`
}

type rolesAnywhere struct {
	anchors  map[string]TrustAnchor
	pools    map[string]*x509.CertPool
	profiles map[string]RolesAnywhereProfile
	// revoked are the serial numbers (hex) of certificates revoked by configuration, as an
	// imported certificate revocation list revokes them.
	revoked map[string]bool
}

func newRolesAnywhere() rolesAnywhere {
	return rolesAnywhere{anchors: map[string]TrustAnchor{}, pools: map[string]*x509.CertPool{}, profiles: map[string]RolesAnywhereProfile{}, revoked: map[string]bool{}}
}

// AddTrustAnchor creates or replaces a trust anchor.
func (s *Server) AddTrustAnchor(a TrustAnchor) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(a.CAPEM) {
		return errors.New("the trust anchor's CAPEM holds no PEM certificate")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.anywhere.anchors[a.Arn], s.anywhere.pools[a.Arn] = a, pool
	return nil
}

// AddRolesAnywhereProfile creates or replaces a profile.
func (s *Server) AddRolesAnywhereProfile(p RolesAnywhereProfile) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.anywhere.profiles[p.Arn] = p
}

// RevokeCertificate refuses every later session signed by the certificate with this serial
// number (hex, as CertificateSerial records it), or allows it again.
func (s *Server) RevokeCertificate(serialHex string, revoked bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.anywhere.revoked[strings.ToLower(serialHex)] = revoked
}

// Bounds on what a CreateSession request may make the emulator parse.
const (
	maxCertHeader  = 16 << 10
	maxChainHeader = 64 << 10
	maxChainCerts  = 5
)

func accessDeniedException(format string, a ...any) *apiError {
	return &apiError{http.StatusForbidden, "AccessDeniedException", fmt.Sprintf(format, a...)}
}

func validationException(format string, a ...any) *apiError {
	return &apiError{http.StatusBadRequest, "ValidationException", fmt.Sprintf(format, a...)}
}

func (s *Server) serveCreateSession(w http.ResponseWriter, r *http.Request) {
	call := Call{Action: "CreateSession", Host: r.Host}
	res, aerr := s.createSession(r, &call)
	s.record(call, aerr)
	w.Header().Set("Content-Type", "application/json")
	if aerr != nil {
		// The REST-JSON error shape: the code in X-Amzn-ErrorType, the message in the body.
		w.Header().Set("X-Amzn-ErrorType", aerr.code)
		w.WriteHeader(aerr.status)
		_ = json.NewEncoder(w).Encode(map[string]string{"message": aerr.message})
		return
	}
	_ = json.NewEncoder(w).Encode(res)
}

func (s *Server) createSession(r *http.Request, call *Call) (any, *apiError) {
	if r.Method != http.MethodPost {
		return nil, validationException("CreateSession is POST /sessions")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return nil, validationException("could not read the request body")
	}
	q := r.URL.Query()
	call.RoleArn = q.Get("roleArn")
	cert, chain, aerr := requestCertificates(r)
	if aerr != nil {
		return nil, aerr
	}
	call.CertificateSerial = fmt.Sprintf("%x", cert.SerialNumber)
	call.Caller = cert.Subject.String()
	if aerr := s.verifyX509Signature(r, body, cert); aerr != nil {
		return nil, aerr
	}
	if injected := s.nextFault(call.Action); injected != nil {
		return nil, &apiError{injected.status, injected.code, injected.message}
	}
	var in struct {
		DurationSeconds *int32 `json:"durationSeconds"`
		RoleSessionName string `json:"roleSessionName"`
	}
	if len(body) > 0 && json.Unmarshal(body, &in) != nil {
		return nil, validationException("the request body is not a CreateSession JSON document")
	}
	call.DurationSeconds = 3600
	if in.DurationSeconds != nil {
		call.DurationSeconds = *in.DurationSeconds
	}
	if call.DurationSeconds < 900 || call.DurationSeconds > 43200 {
		return nil, validationException("durationSeconds must be between 900 and 43200")
	}
	if in.RoleSessionName != "" {
		return nil, accessDeniedException("Not authorized to set roleSessionName.")
	}

	s.mu.Lock()
	anchor, anchorOK := s.anywhere.anchors[q.Get("trustAnchorArn")]
	pool := s.anywhere.pools[q.Get("trustAnchorArn")]
	profile, profileOK := s.anywhere.profiles[q.Get("profileArn")]
	revoked := s.anywhere.revoked[call.CertificateSerial]
	s.mu.Unlock()
	switch {
	case !anchorOK:
		return nil, &apiError{http.StatusNotFound, "ResourceNotFoundException", "Trust anchor not found: " + q.Get("trustAnchorArn")}
	case !profileOK:
		return nil, &apiError{http.StatusNotFound, "ResourceNotFoundException", "Profile not found: " + q.Get("profileArn")}
	case anchor.Disabled:
		return nil, accessDeniedException("Trust anchor is disabled.")
	case profile.Disabled:
		return nil, accessDeniedException("Profile is disabled.")
	}
	intermediates := x509.NewCertPool()
	for _, c := range chain {
		intermediates.AddCert(c)
	}
	now := s.opts.Clock.Now()
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, accessDeniedException("Untrusted signing certificate: it is not valid at %s (valid %s to %s).", now.UTC().Format(time.RFC3339), cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: intermediates, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return nil, accessDeniedException("Untrusted signing certificate")
	}
	if cert.IsCA || cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, accessDeniedException("Untrusted signing certificate: an end-entity certificate with the digitalSignature key usage is required.")
	}
	if revoked {
		return nil, accessDeniedException("Certificate revoked")
	}
	maxDuration := profile.DurationSeconds
	if maxDuration == 0 {
		maxDuration = 3600
	}
	if call.DurationSeconds > maxDuration {
		return nil, validationException("durationSeconds %d exceeds the profile's maximum session duration of %d seconds.", call.DurationSeconds, maxDuration)
	}
	rule, known := s.rule(call.RoleArn)
	if !slices.Contains(profile.RoleArns, call.RoleArn) || !roleArnRe.MatchString(call.RoleArn) ||
		(s.opts.StrictRoles && !known) || rule.Deny || !rule.admitsCertificate(cert) {
		return nil, accessDeniedException("Unable to assume role for %s.", call.RoleArn)
	}
	if rule.MaxSessionDuration > 0 && call.DurationSeconds > rule.MaxSessionDuration {
		return nil, validationException("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
	}
	// AWS names the session after the certificate's serial number.
	call.SessionName = call.CertificateSerial
	sess := roleSession(call.RoleArn, call.SessionName)
	s.issue(sess, call.DurationSeconds)
	call.IssuedAccessKey = sess.accessKeyID
	type credentials struct {
		AccessKeyID     string `json:"accessKeyId"`
		SecretAccessKey string `json:"secretAccessKey"`
		SessionToken    string `json:"sessionToken"`
		Expiration      string `json:"expiration"`
	}
	type credentialResponse struct {
		AssumedRoleUser  assumedRoleUserJSON `json:"assumedRoleUser"`
		Credentials      credentials         `json:"credentials"`
		PackedPolicySize int32               `json:"packedPolicySize"`
		RoleArn          string              `json:"roleArn"`
		SourceIdentity   string              `json:"sourceIdentity,omitempty"`
	}
	return struct {
		CredentialSet []credentialResponse `json:"credentialSet"`
		SubjectArn    string               `json:"subjectArn"`
	}{
		CredentialSet: []credentialResponse{{
			AssumedRoleUser: assumedRoleUserJSON{Arn: sess.arn, AssumedRoleID: sess.userID},
			Credentials:     credentials{sess.accessKeyID, sess.secret, sess.token, sess.expiration.UTC().Format(time.RFC3339)},
			RoleArn:         call.RoleArn,
		}},
		SubjectArn: fmt.Sprintf("arn:%s:rolesanywhere:%s:%s:subject/%s", partitionOf(call.RoleArn), regionOf(anchor.Arn), accountOf(call.RoleArn), stableID(cert.Subject.String(), 12)),
	}, nil
}

type assumedRoleUserJSON struct {
	Arn           string `json:"arn"`
	AssumedRoleID string `json:"assumedRoleId"`
}

// requestCertificates reads the end-entity certificate (X-Amz-X509) and the chain
// (X-Amz-X509-Chain, comma-separated) of a CreateSession request: base64 DER each.
func requestCertificates(r *http.Request) (*x509.Certificate, []*x509.Certificate, *apiError) {
	leaf := r.Header.Get("X-Amz-X509")
	if leaf == "" || len(leaf) > maxCertHeader {
		return nil, nil, accessDeniedException("Missing or oversized X-Amz-X509 certificate header.")
	}
	cert, err := parseDERBase64(leaf)
	if err != nil {
		return nil, nil, validationException("X-Amz-X509 is not a base64 DER certificate.")
	}
	var chain []*x509.Certificate
	if h := r.Header.Get("X-Amz-X509-Chain"); h != "" {
		parts := strings.Split(h, ",")
		if len(h) > maxChainHeader || len(parts) > maxChainCerts {
			return nil, nil, validationException("X-Amz-X509-Chain holds more than %d certificates.", maxChainCerts)
		}
		for _, p := range parts {
			c, err := parseDERBase64(strings.TrimSpace(p))
			if err != nil {
				return nil, nil, validationException("X-Amz-X509-Chain is not a list of base64 DER certificates.")
			}
			chain = append(chain, c)
		}
	}
	return cert, chain, nil
}

func parseDERBase64(s string) (*x509.Certificate, error) {
	der, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// verifyX509Signature checks the SigV4-X509 signature of a CreateSession request: the canonical
// request and string to sign of Signature Version 4, signed with the certificate's key
// (PKCS #1 v1.5 with SHA-256 for RSA, ASN.1 ECDSA over SHA-256), the credential naming the
// certificate's serial number.
func (s *Server) verifyX509Signature(r *http.Request, body []byte, cert *x509.Certificate) *apiError {
	auth, err := parseSignedAuthorization(r.Header.Get("Authorization"), algoX509RSA, algoX509ECDSA)
	if err != nil {
		return accessDeniedException("Missing or malformed SigV4-X509 Authorization header.")
	}
	if auth.AccessKeyID != cert.SerialNumber.String() || auth.Service != "rolesanywhere" {
		return accessDeniedException("The Authorization credential does not name the signing certificate's serial number and the rolesanywhere service.")
	}
	signsCert := false
	for _, h := range auth.SignedHeaders {
		signsCert = signsCert || h == "x-amz-x509"
	}
	if !signsCert {
		return accessDeniedException("The X-Amz-X509 header must be signed.")
	}
	toSign, err := auth.stringToSign(r, body, time.Now(), s.opts.MaxSkew)
	if err != nil {
		if errors.Is(err, errSkew) {
			return accessDeniedException("Signature expired: the request time is too far from the server time.")
		}
		return accessDeniedException("Malformed signed request: %v.", err)
	}
	sig, err := hex.DecodeString(auth.Signature)
	if err != nil {
		return accessDeniedException("Invalid signature.")
	}
	digest := sha256.Sum256([]byte(toSign))
	ok := false
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		ok = auth.Algorithm == algoX509RSA && rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil
	case *ecdsa.PublicKey:
		ok = auth.Algorithm == algoX509ECDSA && ecdsa.VerifyASN1(pub, digest[:], sig)
	}
	if !ok {
		return accessDeniedException("Invalid signature.")
	}
	return nil
}

// admitsCertificate applies the rule's RolesAnywhereSubjects.
func (r RoleRule) admitsCertificate(cert *x509.Certificate) bool {
	if len(r.RolesAnywhereSubjects) == 0 {
		return true
	}
	for _, pat := range r.RolesAnywhereSubjects {
		if m, _ := path.Match(pat, cert.Subject.CommonName); m {
			return true
		}
	}
	return false
}

func regionOf(arn string) string {
	parts := strings.SplitN(arn, ":", 5)
	if len(parts) >= 4 {
		return parts[3]
	}
	return ""
}
