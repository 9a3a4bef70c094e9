// Package ststest is a wire-faithful emulator of AWS STS for tests, benchmarks and the demo. It
// speaks the Query protocol (form-encoded POST, XML answers and AWS error documents), verifies
// Signature Version 4 against configured long-term keys and the credentials it issued itself,
// enforces AWS's parameter limits and error codes, and offers test controls: an injected clock, a
// time scale, fault injection, per-role trust rules and a record of every call.
package ststest

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/utils/clock"
)

// Principal is an identity with access keys that the emulator did not issue itself: an IAM
// user, or a role session issued elsewhere (IRSA, EKS Pod Identity, an instance profile).
type Principal struct {
	AccessKeyID     string
	SecretAccessKey string
	// SessionToken, when set, must accompany every call (X-Amz-Security-Token), as for any
	// temporary credentials.
	SessionToken string
	// Arn identifies the caller, for example arn:aws:iam::000000000000:user/rolekeeper. An
	// assumed-role ARN (arn:aws:sts::<account>:assumed-role/<role>/<session>) makes the principal
	// a role session: every AssumeRole it signs is role chaining, capped at one hour.
	Arn string
	// TransitiveTags are session tags the principal's own session carries as transitive, as an
	// EKS Pod Identity session carries six (PodIdentityTags). They pass into every session it
	// assumes, cannot be set to another value there, and need sts:TagSession on every hop.
	TransitiveTags []Tag
	// PackedPercent is the share of the packed policy and tag limit those tags use, added to
	// every session the principal assumes. AWS does not publish how it packs; EKS Pod Identity's
	// six tags are reported to use about three quarters.
	PackedPercent int32
}

// PodIdentityTags are the transitive session tags EKS Pod Identity puts on a pod's session, with
// the values it would give the operator's pod.
func PodIdentityTags(clusterArn, namespace, serviceAccount, pod, podUID string) []Tag {
	return []Tag{
		{"eks-cluster-arn", clusterArn}, {"eks-cluster-name", path.Base(clusterArn)}, {"kubernetes-namespace", namespace},
		{"kubernetes-service-account", serviceAccount}, {"kubernetes-pod-name", pod}, {"kubernetes-pod-uid", podUID},
	}
}

// RoleRule is the emulated trust policy of one role. The zero value trusts every authenticated
// caller, like a permissive trust policy.
type RoleRule struct {
	// Deny refuses every caller (AccessDenied).
	Deny bool
	// AllowedCallers are path.Match patterns of caller ARNs; empty allows every caller.
	AllowedCallers []string
	// ExternalID, when set, must be sent exactly (sts:ExternalId condition).
	ExternalID string
	// DenyTagSession refuses calls that pass session tags (trust policy without sts:TagSession).
	DenyTagSession bool
	// RequireTags must all be present with these values among the session's tags, including
	// transitive tags inherited from the caller (aws:RequestTag conditions).
	RequireTags map[string]string
	// MaxSessionDuration is the role's maximum session duration; default 43200.
	MaxSessionDuration int32
	// WebIdentity, when set, admits AssumeRoleWithWebIdentity only with a token of that provider,
	// audience and subject; unset, a token any registered provider signed is enough.
	WebIdentity *WebIdentityTrust `json:",omitempty"`
	// RolesAnywhereSubjects, when set, are path.Match patterns of the certificate subject's
	// common name that IAM Roles Anywhere sessions of the role may have
	// (aws:PrincipalTag/x509Subject/CN); unset admits every certificate the trust anchor trusts.
	RolesAnywhereSubjects []string `json:",omitempty"`
}

// Options configure a Server.
type Options struct {
	// Principals are the long-term keys that may sign calls.
	Principals []Principal
	// Clock decides issue and expiry times. Default: the real clock.
	Clock clock.PassiveClock
	// TimeScale divides every granted lifetime: with 60, a 900 s session expires after 15 s of
	// the Clock. Default 1.
	TimeScale float64
	// StrictRoles refuses roles without a rule (AccessDenied), like AWS for unknown roles.
	StrictRoles bool
	// MaxSkew is the largest accepted difference between X-Amz-Date and the wall clock.
	// Default 5 minutes.
	MaxSkew time.Duration
	// ECRTokenLifetime is how long ECR authorization tokens last before TimeScale divides it.
	// Default 12 hours, as ECR documents.
	ECRTokenLifetime time.Duration
	// GlobalHosts are hostnames treated as the global STS endpoint, where AssumeRoot is refused.
	// Default: sts.amazonaws.com.
	GlobalHosts []string
}

// Tag is a session tag as the emulator received it.
type Tag struct{ Key, Value string }

// Call is one request the emulator answered, with the parameters it received. It holds no
// secrets: the emulator does not record keys, tokens or signatures.
type Call struct {
	Time              time.Time
	Action            string
	Caller            string
	CallerAccessKey   string
	Region            string
	Host              string
	RoleArn           string
	SessionName       string
	DurationSeconds   int32
	ExternalID        string
	SourceIdentity    string
	Policy            string
	PolicyArns        []string
	Tags              []Tag
	TransitiveTagKeys []string
	TargetPrincipal   string
	TaskPolicyArn     string
	// RegistryIDs of an ECR GetAuthorizationToken call.
	RegistryIDs []string
	// Subject and TokenID are the sub and jti claims of an AssumeRoleWithWebIdentity token (the
	// token itself is not recorded).
	Subject string `json:",omitempty"`
	TokenID string `json:",omitempty"`
	// CertificateSerial is the hex serial number of the certificate that signed a Roles Anywhere
	// CreateSession call.
	CertificateSerial string `json:",omitempty"`
	// Code is the error code answered, "" on success.
	Code string
	// IssuedAccessKey is the access key id of the credentials issued, "" on failure.
	IssuedAccessKey string
}

type session struct {
	accessKeyID, secret, token string
	expiration                 time.Time
	arn, userID, account       string
	sourceIdentity             string
	transitive                 []Tag
	// packedInherited is the share of the packed limit the transitive tags already use.
	packedInherited int32
	root            bool
	// roleArn is the role of an assumed-role session.
	roleArn string
}

type fault struct {
	// action limits the fault to one operation; "" matches any.
	action        string
	code, message string
	status        int
}

// Server is the emulator. It is an http.Handler; Start serves it on a local port.
type Server struct {
	opts Options

	mu         sync.Mutex
	principals map[string]Principal
	sessions   map[string]*session
	rules      map[string]RoleRule
	calls      []Call
	faults     []fault
	ecrTokens  map[string]*ecrToken
	ecrDeny    map[string]bool
	oidc       map[string]*oidcVerifier
	anywhere   rolesAnywhere
	latency    time.Duration
	down       bool
	// inFlight counts the requests being answered, delayed ones included.
	inFlight atomic.Int64

	http *httptest.Server
	// URL is the base URL while started.
	URL string
}

// New returns an emulator that is not yet serving.
func New(opts Options) *Server {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.TimeScale <= 0 {
		opts.TimeScale = 1
	}
	if opts.MaxSkew <= 0 {
		opts.MaxSkew = 5 * time.Minute
	}
	if len(opts.GlobalHosts) == 0 {
		opts.GlobalHosts = []string{"sts.amazonaws.com"}
	}
	s := &Server{opts: opts, principals: map[string]Principal{}, sessions: map[string]*session{}, rules: map[string]RoleRule{},
		ecrTokens: map[string]*ecrToken{}, ecrDeny: map[string]bool{}, oidc: map[string]*oidcVerifier{}, anywhere: newRolesAnywhere()}
	for _, p := range opts.Principals {
		s.principals[p.AccessKeyID] = p
	}
	return s
}

// Start serves the emulator on 127.0.0.1 on a free port and sets URL.
func (s *Server) Start() *Server {
	s.http = httptest.NewServer(s)
	s.URL = s.http.URL
	return s
}

// Close stops serving.
func (s *Server) Close() {
	if s.http != nil {
		s.http.CloseClientConnections()
		s.http.Close()
	}
}

// SetRole sets the trust rule of a role ARN.
func (s *Server) SetRole(roleArn string, rule RoleRule) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules[roleArn] = rule
}

// AddPrincipal adds long-term keys.
func (s *Server) AddPrincipal(p Principal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.principals[p.AccessKeyID] = p
}

// ThrottleNext answers the next n calls with Throttling (HTTP 400, "Rate exceeded").
func (s *Server) ThrottleNext(n int) {
	for range n {
		s.FailNext(1, "Throttling", http.StatusBadRequest, "Rate exceeded")
	}
}

// FailNext answers the next n calls with the given AWS error code, HTTP status and message.
func (s *Server) FailNext(n int, code string, status int, message string) {
	s.FailNextAction("", n, code, status, message)
}

// FailNextAction answers the next n calls of one action (for example GetAuthorizationToken)
// with the given error; other actions are answered normally.
func (s *Server) FailNextAction(action string, n int, code string, status int, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, fault{action: action, code: code, status: status, message: message})
	}
}

// nextFault takes the first pending fault that applies to action.
func (s *Server) nextFault(action string) *fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.action == "" || f.action == action {
			s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
			return &f
		}
	}
	return nil
}

// record keeps one answered call.
func (s *Server) record(call Call, aerr *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	call.Time = s.opts.Clock.Now()
	if aerr != nil {
		call.Code = aerr.code
	}
	s.calls = append(s.calls, call)
}

// ClearFaults drops pending injected failures.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// SetLatency delays every answer by d.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetDown makes the emulator drop every connection without an answer (a network failure) until
// called with false.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
}

// InFlight is how many requests the emulator is answering now, those held by SetLatency included.
func (s *Server) InFlight() int { return int(s.inFlight.Load()) }

// Calls returns a copy of every call answered so far.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// CallCount counts answered calls of an action ("" for all), successful or not.
func (s *Server) CallCount(action string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.calls {
		if action == "" || c.Action == action {
			n++
		}
	}
	return n
}

// ResetCalls forgets the recorded calls.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
}

// apiError is an AWS error document to answer with.
type apiError struct {
	status        int
	code, message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func denied(caller, action, resource string) *apiError {
	return &apiError{http.StatusForbidden, "AccessDenied", fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s", caller, action, resource)}
}

func validation(format string, a ...any) *apiError {
	return &apiError{http.StatusBadRequest, "ValidationError", fmt.Sprintf(format, a...)}
}

// ServeHTTP answers one Query protocol request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down, latency := s.down, s.latency
	s.mu.Unlock()
	if down {
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
				return
			}
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	if latency > 0 {
		time.Sleep(latency)
	}
	if r.Method == http.MethodGet && r.URL.Path == "/v2/" {
		s.serveRegistry(w, r)
		return
	}
	requestID := newRequestID()
	w.Header().Set("x-amzn-RequestId", requestID)
	if isECR(r) {
		s.serveECR(w, r)
		return
	}
	if r.URL.Path == "/sessions" {
		s.serveCreateSession(w, r)
		return
	}
	call, result, aerr := s.handle(r)
	s.record(call, aerr)
	if aerr != nil {
		writeError(w, aerr, requestID)
		return
	}
	writeResult(w, call.Action, result, requestID)
}

func (s *Server) handle(r *http.Request) (Call, any, *apiError) {
	call := Call{Host: r.Host}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		return call, nil, &apiError{http.StatusMethodNotAllowed, "InvalidAction", "only POST and GET are supported"}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return call, nil, &apiError{http.StatusBadRequest, "InvalidRequest", "could not read the request body"}
	}
	form, err := parseForm(r, body)
	if err != nil {
		return call, nil, &apiError{http.StatusBadRequest, "MalformedQueryString", "the request body is not form-encoded"}
	}
	call.Action = form.Get("Action")
	if call.Action == "AssumeRoleWithWebIdentity" {
		// Unsigned: the token is the proof of identity.
		if v := form.Get("Version"); v != "2011-06-15" {
			return call, nil, &apiError{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("Could not find operation %s for version %s", call.Action, v)}
		}
		if injected := s.nextFault(call.Action); injected != nil {
			return call, nil, &apiError{injected.status, injected.code, injected.message}
		}
		res, aerr := s.assumeRoleWithWebIdentity(r.Context(), form, &call)
		return call, res, aerr
	}

	caller, region, aerr := s.authenticate(r, body)
	if aerr != nil {
		return call, nil, aerr
	}
	call.Caller, call.CallerAccessKey, call.Region = caller.arn, caller.accessKeyID, region

	injected := s.nextFault(call.Action)

	if v := form.Get("Version"); v != "2011-06-15" {
		return call, nil, &apiError{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("Could not find operation %s for version %s", call.Action, v)}
	}
	switch call.Action {
	case "AssumeRole":
		readAssumeRole(form, &call)
	case "AssumeRoot":
		call.TargetPrincipal = form.Get("TargetPrincipal")
		call.TaskPolicyArn = form.Get("TaskPolicyArn.arn")
		call.DurationSeconds = atoi32(form.Get("DurationSeconds"))
	case "GetCallerIdentity":
	default:
		return call, nil, &apiError{http.StatusBadRequest, "InvalidAction", fmt.Sprintf("Could not find operation %s for version 2011-06-15", call.Action)}
	}
	if injected != nil {
		return call, nil, &apiError{injected.status, injected.code, injected.message}
	}
	switch call.Action {
	case "AssumeRole":
		res, aerr := s.assumeRole(caller, form, &call)
		return call, res, aerr
	case "AssumeRoot":
		res, aerr := s.assumeRoot(caller, r.Host, &call)
		return call, res, aerr
	default:
		return call, callerIdentityResult{Arn: caller.arn, UserID: caller.userID, Account: caller.account}, nil
	}
}

// authenticate verifies the request's signature and returns the caller.
func (s *Server) authenticate(r *http.Request, body []byte) (*session, string, *apiError) {
	auth, err := parseAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return nil, "", &apiError{http.StatusBadRequest, "MissingAuthenticationToken", "Request is missing Authentication Token"}
	}
	s.mu.Lock()
	p, isPrincipal := s.principals[auth.AccessKeyID]
	sess, isSession := s.sessions[auth.AccessKeyID]
	s.mu.Unlock()
	var caller *session
	var secret string
	switch {
	case isPrincipal:
		secret = p.SecretAccessKey
		caller = &session{accessKeyID: p.AccessKeyID, token: p.SessionToken, arn: p.Arn, userID: "AIDA" + stableID(p.Arn, 17), account: accountOf(p.Arn),
			transitive: p.TransitiveTags, packedInherited: p.PackedPercent, expiration: time.Now().Add(24 * time.Hour)}
	case isSession:
		secret = sess.secret
		caller = sess
	default:
		return nil, "", &apiError{http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid."}
	}
	if err := auth.verify(r, body, secret, time.Now(), s.opts.MaxSkew); err != nil {
		if errors.Is(err, errSkew) {
			return nil, "", &apiError{http.StatusForbidden, "SignatureDoesNotMatch", "Signature expired: the request time is too far from the server time."}
		}
		return nil, "", &apiError{http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."}
	}
	if isSession || caller.token != "" {
		if r.Header.Get("X-Amz-Security-Token") != caller.token {
			return nil, "", &apiError{http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid."}
		}
		if isSession && !s.opts.Clock.Now().Before(sess.expiration) {
			return nil, "", &apiError{http.StatusBadRequest, "ExpiredToken", "The security token included in the request is expired"}
		}
	}
	return caller, auth.Region, nil
}

func (s *Server) issue(sess *session, durationSeconds int32) {
	now := s.opts.Clock.Now()
	lifetime := time.Duration(float64(durationSeconds) * float64(time.Second) / s.opts.TimeScale)
	sess.accessKeyID = "ASIA" + randomString(16, upperAlnum)
	sess.secret = randomString(40, base64Chars)
	sess.token = "IQoJb3JpZ2luX2Vj" + randomString(340, base64Chars)
	sess.expiration = now.Add(lifetime).Truncate(time.Second)
	s.mu.Lock()
	s.sessions[sess.accessKeyID] = sess
	s.mu.Unlock()
}

func (s *Server) rule(roleArn string) (RoleRule, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rules[roleArn]
	return r, ok
}

func (s *Server) assumeRoot(caller *session, host string, call *Call) (any, *apiError) {
	for _, h := range s.opts.GlobalHosts {
		if strings.EqualFold(stripPort(host), h) {
			return nil, &apiError{http.StatusForbidden, "RegionDisabledException", "AssumeRoot is not available on the global STS endpoint; call a regional endpoint."}
		}
	}
	if caller.root {
		return nil, denied(caller.arn, "sts:AssumeRoot", call.TargetPrincipal)
	}
	if n := len(call.TargetPrincipal); n < 12 || n > 2048 || !targetPrincipalRe.MatchString(call.TargetPrincipal) {
		return nil, validation("1 validation error detected: Value at 'targetPrincipal' failed to satisfy constraint: Member must be an account ID or principal ARN")
	}
	if !rootTaskPolicies[path.Base(call.TaskPolicyArn)] || !strings.Contains(call.TaskPolicyArn, ":iam::aws:policy/root-task/") {
		return nil, validation("1 validation error detected: Value at 'taskPolicyArn' failed to satisfy constraint: Member must be an AWS managed root task policy")
	}
	if call.DurationSeconds == 0 {
		call.DurationSeconds = 900
	}
	if call.DurationSeconds < 0 || call.DurationSeconds > 900 {
		return nil, validation("1 validation error detected: Value '%d' at 'durationSeconds' failed to satisfy constraint: Member must have value less than or equal to 900", call.DurationSeconds)
	}
	account := call.TargetPrincipal
	if len(account) != 12 {
		account = accountOf(account)
	}
	sess := &session{arn: "arn:" + partitionOf(call.TaskPolicyArn) + ":iam::" + account + ":root", userID: account, account: account, root: true}
	s.issue(sess, call.DurationSeconds)
	call.IssuedAccessKey = sess.accessKeyID
	return assumeRootResult{Credentials: credentialsXML(sess)}, nil
}

func stripPort(host string) string {
	if i := strings.LastIndexByte(host, ':'); i > 0 && !strings.Contains(host[i:], "]") {
		return host[:i]
	}
	return host
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

const (
	upperAlnum  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	base64Chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)

func randomString(n int, alphabet string) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// stableID derives an id of n upper-case characters from s, like the ids AWS gives roles.
func stableID(s string, n int) string {
	sum := sha256.Sum256([]byte(s))
	enc := strings.ToUpper(base64.RawStdEncoding.EncodeToString(sum[:]))
	enc = strings.NewReplacer("+", "X", "/", "Y").Replace(enc)
	return enc[:n]
}

func accountOf(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) >= 5 && len(parts[4]) == 12 {
		return parts[4]
	}
	return "000000000000"
}

func partitionOf(arn string) string {
	parts := strings.SplitN(arn, ":", 3)
	if len(parts) >= 2 && strings.HasPrefix(parts[1], "aws") {
		return parts[1]
	}
	return "aws"
}
