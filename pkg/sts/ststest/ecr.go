package ststest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// ECR: the emulator also answers Amazon ECR's GetAuthorizationToken (AWS JSON 1.1 protocol,
// X-Amz-Target AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken) signed by any identity
// it knows, and serves a registry login check at GET /v2/ (HTTP Basic, as docker login does), so a
// test can prove an image-pull Secret logs in.

const (
	ecrTargetPrefix = "AmazonEC2ContainerRegistry_V20150921."
	// ECRTokenLifetime is how long ECR authorization tokens last before TimeScale.
	ECRTokenLifetime = 12 * time.Hour
)

var ecrRegistryIDRe = regexp.MustCompile(`^[0-9]{12}$`)

type ecrToken struct {
	expiration time.Time
	registries map[string]bool
}

type ecrAuthorizationData struct {
	AuthorizationToken string  `json:"authorizationToken"`
	ExpiresAt          float64 `json:"expiresAt"`
	ProxyEndpoint      string  `json:"proxyEndpoint"`
}

// isECR reports whether r is an ECR JSON call.
func isECR(r *http.Request) bool {
	return strings.HasPrefix(r.Header.Get("X-Amz-Target"), ecrTargetPrefix)
}

func (s *Server) serveECR(w http.ResponseWriter, r *http.Request) {
	call, result, aerr := s.handleECR(r)
	s.record(call, aerr)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if aerr != nil {
		w.Header().Set("X-Amzn-ErrorType", aerr.code)
		w.WriteHeader(aerr.status)
		_ = json.NewEncoder(w).Encode(map[string]string{"__type": aerr.code, "message": aerr.message})
		return
	}
	_ = json.NewEncoder(w).Encode(result)
}

func (s *Server) handleECR(r *http.Request) (Call, any, *apiError) {
	call := Call{Host: r.Host, Action: strings.TrimPrefix(r.Header.Get("X-Amz-Target"), ecrTargetPrefix)}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return call, nil, &apiError{http.StatusBadRequest, "InvalidParameterException", "could not read the request body"}
	}
	caller, region, aerr := s.authenticate(r, body)
	if aerr != nil {
		if aerr.code == "InvalidClientTokenId" {
			aerr.code = "UnrecognizedClientException"
		}
		return call, nil, aerr
	}
	call.Caller, call.CallerAccessKey, call.Region = caller.arn, caller.accessKeyID, region
	if call.Action != "GetAuthorizationToken" {
		return call, nil, &apiError{http.StatusBadRequest, "UnknownOperationException", "Unknown operation " + call.Action}
	}
	var in struct {
		RegistryIDs []string `json:"registryIds"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return call, nil, &apiError{http.StatusBadRequest, "SerializationException", "the request body is not JSON"}
	}
	call.RegistryIDs = in.RegistryIDs
	if f := s.nextFault(call.Action); f != nil {
		return call, nil, &apiError{f.status, f.code, f.message}
	}
	if len(in.RegistryIDs) > 10 {
		return call, nil, &apiError{http.StatusBadRequest, "InvalidParameterException", "registryIds must contain at most 10 items"}
	}
	for _, id := range in.RegistryIDs {
		if !ecrRegistryIDRe.MatchString(id) {
			return call, nil, &apiError{http.StatusBadRequest, "InvalidParameterException", fmt.Sprintf("Invalid parameter at 'registryIds' failed to satisfy constraint: 'must satisfy regular expression [0-9]{12}' (%q)", id)}
		}
	}
	if caller.root || s.ecrDenied(caller) {
		return call, nil, &apiError{http.StatusBadRequest, "AccessDeniedException", fmt.Sprintf("User: %s is not authorized to perform: ecr:GetAuthorizationToken on resource: * because no identity-based policy allows the ecr:GetAuthorizationToken action", caller.arn)}
	}
	ids := in.RegistryIDs
	if len(ids) == 0 {
		ids = []string{caller.account}
	}
	now := s.opts.Clock.Now()
	lifetime := time.Duration(float64(s.ecrLifetime()) / s.opts.TimeScale)
	expiration := now.Add(lifetime)
	password := "eyJwYXlsb2FkIjoi" + randomString(600, base64Chars)
	tok := &ecrToken{expiration: expiration, registries: map[string]bool{}}
	var out struct {
		AuthorizationData []ecrAuthorizationData `json:"authorizationData"`
	}
	for _, id := range ids {
		host := fmt.Sprintf("%s.dkr.ecr.%s.amazonaws.com", id, region)
		tok.registries[host] = true
		out.AuthorizationData = append(out.AuthorizationData, ecrAuthorizationData{
			AuthorizationToken: base64.StdEncoding.EncodeToString([]byte("AWS:" + password)),
			ExpiresAt:          float64(expiration.UnixMilli()) / 1000,
			ProxyEndpoint:      "https://" + host,
		})
	}
	s.mu.Lock()
	s.ecrTokens[password] = tok
	s.mu.Unlock()
	return call, out, nil
}

func (s *Server) ecrLifetime() time.Duration {
	if s.opts.ECRTokenLifetime > 0 {
		return s.opts.ECRTokenLifetime
	}
	return ECRTokenLifetime
}

// ecrDenied applies SetECRDenied to the role behind an assumed-role session.
func (s *Server) ecrDenied(caller *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return caller.roleArn != "" && s.ecrDeny[caller.roleArn]
}

// SetECRDenied makes GetAuthorizationToken answer AccessDeniedException for sessions of roleArn
// (an identity policy without ecr:GetAuthorizationToken).
func (s *Server) SetECRDenied(roleArn string, denied bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ecrDeny[roleArn] = denied
}

// RegistryLogin checks a docker login against the emulated registry host: nil when password is
// an ECR token the emulator issued for that registry and it has not expired.
func (s *Server) RegistryLogin(host, username, password string) error {
	s.mu.Lock()
	tok, ok := s.ecrTokens[password]
	s.mu.Unlock()
	switch {
	case username != "AWS" || !ok:
		return fmt.Errorf("no basic auth credentials")
	case !tok.registries[host]:
		return fmt.Errorf("the token was not issued for registry %s", host)
	case !s.opts.Clock.Now().Before(tok.expiration):
		return fmt.Errorf("your authorization token has expired; reauthenticate and try again")
	}
	return nil
}

// serveRegistry answers GET /v2/ like a registry's API version check: 200 with a valid login for
// the registry named by the Host header, 401 otherwise.
func (s *Server) serveRegistry(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if ok {
		if err := s.RegistryLogin(stripPort(r.Host), user, pass); err == nil {
			w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
			w.WriteHeader(http.StatusOK)
			return
		}
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="https://`+stripPort(r.Host)+`/",service="ecr.amazonaws.com"`)
	http.Error(w, "Not Authorized", http.StatusUnauthorized)
}
