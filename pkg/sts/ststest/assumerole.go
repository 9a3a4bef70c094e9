package ststest

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

var (
	roleArnRe         = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$`)
	policyArnRe       = regexp.MustCompile(`^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/[\w+=,.@/-]+$`)
	sessionNameRe     = regexp.MustCompile(`^[\w+=,.@-]*$`)
	externalIDRe      = regexp.MustCompile(`^[\w+=,.@:/-]*$`)
	tagKeyRe          = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+@-]+$`)
	tagValueRe        = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+@-]*$`)
	targetPrincipalRe = regexp.MustCompile(`^([0-9]{12}|arn:aws[a-z-]*:iam::[0-9]{12}:[\w+=,.@/-]+)$`)
	rootTaskPolicies  = map[string]bool{
		"IAMAuditRootUserCredentials": true, "IAMCreateRootUserPassword": true, "IAMDeleteRootUserCredentials": true,
		"S3UnlockBucketPolicy": true, "SQSUnlockQueuePolicy": true,
	}
)

func parseForm(r *http.Request, body []byte) (url.Values, error) {
	form := url.Values{}
	for k, v := range r.URL.Query() {
		form[k] = v
	}
	if len(body) > 0 {
		b, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, err
		}
		for k, v := range b {
			form[k] = append(form[k], v...)
		}
	}
	return form, nil
}

func atoi32(s string) int32 {
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0
	}
	return int32(n)
}

// members reads a Query protocol list: prefix.member.1, prefix.member.2, ...
func members(form url.Values, prefix, suffix string) []string {
	var out []string
	for i := 1; ; i++ {
		key := fmt.Sprintf("%s.member.%d%s", prefix, i, suffix)
		if _, ok := form[key]; !ok {
			return out
		}
		out = append(out, form.Get(key))
	}
}

func readAssumeRole(form url.Values, call *Call) {
	call.RoleArn = form.Get("RoleArn")
	call.SessionName = form.Get("RoleSessionName")
	call.DurationSeconds = atoi32(form.Get("DurationSeconds"))
	call.ExternalID = form.Get("ExternalId")
	call.SourceIdentity = form.Get("SourceIdentity")
	call.Policy = form.Get("Policy")
	call.PolicyArns = members(form, "PolicyArns", ".arn")
	keys := members(form, "Tags", ".Key")
	for i, k := range keys {
		call.Tags = append(call.Tags, Tag{Key: k, Value: form.Get(fmt.Sprintf("Tags.member.%d.Value", i+1))})
	}
	call.TransitiveTagKeys = members(form, "TransitiveTagKeys", "")
}

// validateAssumeRole applies AWS's documented parameter constraints, answering as STS does.
func validateAssumeRole(call *Call, chained bool) *apiError {
	if n := len(call.RoleArn); n < 20 || n > 2048 {
		return validation("1 validation error detected: Value '%s' at 'roleArn' failed to satisfy constraint: Member must have length between 20 and 2048", call.RoleArn)
	}
	if !roleArnRe.MatchString(call.RoleArn) {
		return validation("%s is invalid", call.RoleArn)
	}
	if n := len(call.SessionName); n < 2 || n > 64 || !sessionNameRe.MatchString(call.SessionName) {
		return validation("1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64", call.SessionName)
	}
	if call.DurationSeconds == 0 {
		call.DurationSeconds = 3600
	}
	if call.DurationSeconds < 900 || call.DurationSeconds > 43200 {
		return validation("1 validation error detected: Value '%d' at 'durationSeconds' failed to satisfy constraint: Member must have value between 900 and 43200", call.DurationSeconds)
	}
	if chained && call.DurationSeconds > 3600 {
		return validation("The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
	}
	if call.ExternalID != "" && (len(call.ExternalID) < 2 || len(call.ExternalID) > 1224 || !externalIDRe.MatchString(call.ExternalID)) {
		return validation("1 validation error detected: Value at 'externalId' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@:/-]* and have length between 2 and 1224")
	}
	if si := call.SourceIdentity; si != "" && (len(si) < 2 || len(si) > 64 || !sessionNameRe.MatchString(si) || strings.HasPrefix(strings.ToLower(si), "aws:")) {
		return validation("1 validation error detected: Value '%s' at 'sourceIdentity' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64, and must not start with aws:", si)
	}
	if len(call.PolicyArns) > 10 {
		return validation("1 validation error detected: Value at 'policyArns' failed to satisfy constraint: Member must have length less than or equal to 10")
	}
	total := utf8.RuneCountInString(call.Policy)
	for _, a := range call.PolicyArns {
		total += utf8.RuneCountInString(a)
		if !policyArnRe.MatchString(a) {
			return validation("%s is invalid", a)
		}
	}
	if total > 2048 {
		return validation("1 validation error detected: the session policy and policy ARNs together must have length less than or equal to 2048")
	}
	if call.Policy != "" {
		if msg := policyGrammar(call.Policy); msg != "" {
			return &apiError{http.StatusBadRequest, "MalformedPolicyDocument", msg}
		}
	}
	if len(call.Tags) > 50 {
		return validation("1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50")
	}
	seen := map[string]bool{}
	for _, t := range call.Tags {
		if n := utf8.RuneCountInString(t.Key); n < 1 || n > 128 || !tagKeyRe.MatchString(t.Key) {
			return validation("1 validation error detected: Value '%s' at 'tags.key' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+ and have length between 1 and 128", t.Key)
		}
		if utf8.RuneCountInString(t.Value) > 256 || !tagValueRe.MatchString(t.Value) {
			return validation("1 validation error detected: Value at 'tags.value' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]* and have length less than or equal to 256")
		}
		if seen[strings.ToLower(t.Key)] {
			return &apiError{http.StatusBadRequest, "InvalidParameterValue", "Duplicate tag keys found. Please note that Tag keys are case insensitive."}
		}
		seen[strings.ToLower(t.Key)] = true
	}
	if len(call.TransitiveTagKeys) > 50 {
		return validation("1 validation error detected: Value at 'transitiveTagKeys' failed to satisfy constraint: Member must have length less than or equal to 50")
	}
	for _, k := range call.TransitiveTagKeys {
		if !seen[strings.ToLower(k)] {
			return &apiError{http.StatusBadRequest, "InvalidParameterValue", fmt.Sprintf("Transitive tag key %s is not among the session tags.", k)}
		}
	}
	return nil
}

// policyGrammar checks the outline of an IAM policy document as STS does before using it as a
// session policy: a JSON object with a Statement of one or more statements, each with an Effect
// of Allow or Deny. It returns "" when the outline holds.
func policyGrammar(doc string) string {
	if !json.Valid([]byte(doc)) {
		return "The policy is not in the valid JSON format."
	}
	var p struct {
		Version   string
		Statement json.RawMessage
	}
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		return "Syntax errors in policy: the policy must be a JSON object."
	}
	if p.Version != "" && p.Version != "2012-10-17" && p.Version != "2008-10-17" {
		return "Syntax errors in policy: unknown Version " + p.Version + "."
	}
	var statements []map[string]json.RawMessage
	if err := json.Unmarshal(p.Statement, &statements); err != nil {
		var one map[string]json.RawMessage
		if err := json.Unmarshal(p.Statement, &one); err != nil {
			return "Syntax errors in policy: Statement must be a statement or a list of statements."
		}
		statements = []map[string]json.RawMessage{one}
	}
	if len(statements) == 0 {
		return "Syntax errors in policy: the policy has no statement."
	}
	for _, st := range statements {
		var effect string
		if err := json.Unmarshal(st["Effect"], &effect); err != nil || (effect != "Allow" && effect != "Deny") {
			return "Syntax errors in policy: every statement needs an Effect of Allow or Deny."
		}
	}
	return ""
}

// packedPolicySize estimates the percentage of STS's packed limit that the session policies and
// tags use. AWS compresses them with an undisclosed scheme; this model keeps the behaviour that
// matters (grows with policy and tags, refused above 100%).
func packedPolicySize(call *Call) int32 {
	var b bytes.Buffer
	size := 0
	if json.Compact(&b, []byte(call.Policy)) == nil {
		size += b.Len() / 3
	}
	for _, a := range call.PolicyArns {
		size += len(a) / 4
	}
	for _, t := range call.Tags {
		size += len(t.Key) + len(t.Value) + 2
	}
	return int32((size*100 + 2047) / 2048)
}

func (s *Server) assumeRole(caller *session, _ url.Values, call *Call) (any, *apiError) {
	if caller.root {
		return nil, denied(caller.arn, "sts:AssumeRole", call.RoleArn)
	}
	chained := strings.Contains(caller.arn, ":assumed-role/")
	if aerr := validateAssumeRole(call, chained); aerr != nil {
		return nil, aerr
	}
	rule, known := s.rule(call.RoleArn)
	if (s.opts.StrictRoles && !known) || rule.Deny {
		return nil, denied(caller.arn, "sts:AssumeRole", call.RoleArn)
	}
	if len(rule.AllowedCallers) > 0 {
		ok := false
		for _, pat := range rule.AllowedCallers {
			if m, _ := path.Match(pat, caller.arn); m {
				ok = true
			}
		}
		if !ok {
			return nil, denied(caller.arn, "sts:AssumeRole", call.RoleArn)
		}
	}
	if rule.ExternalID != "" && rule.ExternalID != call.ExternalID {
		return nil, denied(caller.arn, "sts:AssumeRole", call.RoleArn)
	}
	// Inherited transitive tags are passed to the new session too, which needs sts:TagSession
	// as much as tags the call sets.
	if rule.DenyTagSession && len(call.Tags)+len(caller.transitive) > 0 {
		return nil, denied(caller.arn, "sts:TagSession", call.RoleArn)
	}
	maxDuration := rule.MaxSessionDuration
	if maxDuration == 0 {
		maxDuration = 43200
	}
	if call.DurationSeconds > maxDuration {
		return nil, validation("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
	}
	// Session tags: transitive tags of the caller carry over and cannot be overridden.
	tags := append([]Tag(nil), caller.transitive...)
	for _, t := range call.Tags {
		for _, inherited := range caller.transitive {
			if strings.EqualFold(inherited.Key, t.Key) && inherited.Value != t.Value {
				return nil, &apiError{http.StatusBadRequest, "InvalidParameterValue", fmt.Sprintf("Cannot override transitive tag %s.", t.Key)}
			}
		}
		tags = append(tags, t)
	}
	for k, v := range rule.RequireTags {
		found := false
		for _, t := range tags {
			found = found || (strings.EqualFold(t.Key, k) && t.Value == v)
		}
		if !found {
			return nil, denied(caller.arn, "sts:AssumeRole", call.RoleArn)
		}
	}
	if caller.sourceIdentity != "" && call.SourceIdentity != "" && call.SourceIdentity != caller.sourceIdentity {
		return nil, &apiError{http.StatusBadRequest, "InvalidParameterValue", "The source identity of a chained session cannot be changed."}
	}
	packed := packedPolicySize(call) + caller.packedInherited
	if packed > 100 {
		return nil, &apiError{http.StatusBadRequest, "PackedPolicyTooLarge", fmt.Sprintf("Packed size of consolidated session policies and session tags exceeds 100%% (%d%%).", packed)}
	}
	sourceIdentity := call.SourceIdentity
	if caller.sourceIdentity != "" {
		sourceIdentity = caller.sourceIdentity
	}
	var transitive []Tag
	for _, t := range tags {
		for _, k := range append(call.TransitiveTagKeys, tagKeys(caller.transitive)...) {
			if strings.EqualFold(k, t.Key) {
				transitive = append(transitive, t)
				break
			}
		}
	}
	sess := roleSession(call.RoleArn, call.SessionName)
	sess.sourceIdentity, sess.transitive, sess.packedInherited = sourceIdentity, transitive, caller.packedInherited
	s.issue(sess, call.DurationSeconds)
	call.IssuedAccessKey = sess.accessKeyID
	return assumeRoleResult{
		Credentials:      credentialsXML(sess),
		AssumedRoleUser:  assumedRoleUserXML{Arn: sess.arn, AssumedRoleID: sess.userID},
		PackedPolicySize: packed,
		SourceIdentity:   sourceIdentity,
	}, nil
}

func tagKeys(tags []Tag) []string {
	out := make([]string, len(tags))
	for i, t := range tags {
		out[i] = t.Key
	}
	return out
}

// XML documents, in the shape of the 2011-06-15 STS API.

const stsNamespace = "https://sts.amazonaws.com/doc/2011-06-15/"

type credentialsDoc struct {
	AccessKeyID     string `xml:"AccessKeyId"`
	SecretAccessKey string `xml:"SecretAccessKey"`
	SessionToken    string `xml:"SessionToken"`
	Expiration      string `xml:"Expiration"`
}

func credentialsXML(s *session) credentialsDoc {
	return credentialsDoc{AccessKeyID: s.accessKeyID, SecretAccessKey: s.secret, SessionToken: s.token, Expiration: s.expiration.UTC().Format(time.RFC3339)}
}

type assumedRoleUserXML struct {
	Arn           string `xml:"Arn"`
	AssumedRoleID string `xml:"AssumedRoleId"`
}

type assumeRoleResult struct {
	XMLName          xml.Name           `xml:"AssumeRoleResult"`
	SourceIdentity   string             `xml:"SourceIdentity,omitempty"`
	AssumedRoleUser  assumedRoleUserXML `xml:"AssumedRoleUser"`
	Credentials      credentialsDoc     `xml:"Credentials"`
	PackedPolicySize int32              `xml:"PackedPolicySize"`
}

type assumeRootResult struct {
	XMLName        xml.Name       `xml:"AssumeRootResult"`
	Credentials    credentialsDoc `xml:"Credentials"`
	SourceIdentity string         `xml:"SourceIdentity,omitempty"`
}

type callerIdentityResult struct {
	XMLName xml.Name `xml:"GetCallerIdentityResult"`
	Arn     string   `xml:"Arn"`
	UserID  string   `xml:"UserId"`
	Account string   `xml:"Account"`
}

type responseDoc struct {
	XMLName  xml.Name
	Xmlns    string `xml:"xmlns,attr"`
	Result   any
	Metadata struct {
		RequestID string `xml:"RequestId"`
	} `xml:"ResponseMetadata"`
}

type errorDoc struct {
	XMLName xml.Name `xml:"ErrorResponse"`
	Xmlns   string   `xml:"xmlns,attr"`
	Error   struct {
		Type    string `xml:"Type"`
		Code    string `xml:"Code"`
		Message string `xml:"Message"`
	} `xml:"Error"`
	RequestID string `xml:"RequestId"`
}

func writeResult(w http.ResponseWriter, action string, result any, requestID string) {
	doc := responseDoc{XMLName: xml.Name{Local: action + "Response"}, Xmlns: stsNamespace, Result: result}
	doc.Metadata.RequestID = requestID
	writeXML(w, http.StatusOK, doc)
}

func writeError(w http.ResponseWriter, e *apiError, requestID string) {
	doc := errorDoc{Xmlns: stsNamespace, RequestID: requestID}
	doc.Error.Type = "Sender"
	if e.status >= 500 {
		doc.Error.Type = "Receiver"
	}
	doc.Error.Code, doc.Error.Message = e.code, e.message
	writeXML(w, e.status, doc)
}

func writeXML(w http.ResponseWriter, status int, doc any) {
	out, err := xml.Marshal(doc)
	if err != nil {
		http.Error(w, "encoding the answer failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(xml.Header))
	_, _ = w.Write(out)
}
