// Package sts is rolekeeper's embedded AWS STS client: request types with AWS's limits checked
// locally, a client over aws-sdk-go-v2 with a shared rate limiter, and error classification.
package sts

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits AWS documents for AssumeRole and AssumeRoot.
const (
	MinDurationSeconds        = 900
	MaxDurationSeconds        = 43200
	MaxChainedDurationSeconds = 3600
	MaxRootDurationSeconds    = 900
	DefaultDurationSeconds    = 3600
	MaxPolicyArns             = 10
	MaxPolicyCharacters       = 2048
	MaxTags                   = 50
	MaxTransitiveTagKeys      = 50
	MaxSessionNameLength      = 64
)

// Tag is one session tag.
type Tag struct {
	Key   string
	Value string
}

// AssumeRoleRequest is one sts:AssumeRole call. Region is where it is sent; the rest are the
// AssumeRole parameters.
type AssumeRoleRequest struct {
	Region            string
	RoleArn           string
	SessionName       string
	DurationSeconds   int32
	ExternalID        string
	SourceIdentity    string
	Policy            string
	PolicyArns        []string
	Tags              []Tag
	TransitiveTagKeys []string
	// Chained says the caller is itself an assumed-role session, which AWS limits to one hour.
	Chained bool
}

// AssumeRootRequest is one sts:AssumeRoot call. AssumeRoot must go to a regional endpoint, so
// Region is required.
type AssumeRootRequest struct {
	Region          string
	TargetPrincipal string
	TaskPolicyArn   string
	DurationSeconds int32
}

// Credentials are temporary AWS credentials. They format as redacted in every fmt verb, so a
// stray log call cannot print them.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expiration      time.Time
}

// String hides the secret parts.
func (c Credentials) String() string {
	return fmt.Sprintf("Credentials{AccessKeyID: %s, Expiration: %s, secret: [REDACTED]}", maskKeyID(c.AccessKeyID), c.Expiration.UTC().Format(time.RFC3339))
}

// GoString hides the secret parts in %#v too.
func (c Credentials) GoString() string { return c.String() }

// Format hides the secret parts in every verb, including %+v.
func (c Credentials) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(c.String())) }

// Valid reports whether the credentials are complete and unexpired at now.
func (c Credentials) Valid(now time.Time) bool {
	return c.AccessKeyID != "" && c.SecretAccessKey != "" && c.SessionToken != "" && now.Before(c.Expiration)
}

// maskKeyID keeps the first four characters (the key type, for example ASIA) and the last four.
func maskKeyID(id string) string {
	if len(id) <= 8 {
		return strings.Repeat("*", len(id))
	}
	return id[:4] + strings.Repeat("*", len(id)-8) + id[len(id)-4:]
}

// Result is what STS returned for a successful call.
type Result struct {
	Credentials Credentials
	// IssuedAt is when the request was sent, by the client's clock; with Credentials.Expiration
	// it gives the lifetime STS actually granted.
	IssuedAt         time.Time
	AssumedRoleArn   string
	AssumedRoleID    string
	SourceIdentity   string
	PackedPolicySize *int32
	RequestID        string
}

// policyChars reports whether s keeps to STS's character set for an inline session policy: tab,
// line feed, carriage return and U+0020 to U+00FF (a byte that is not UTF-8 is U+FFFD, outside
// it). A loop over the runes, not a regular expression: the policy is the longest string in a
// request, and it is checked on every issuance.
func policyChars(s string) bool {
	for _, c := range s {
		if (c < 0x20 || c > 0xFF) && c != '\t' && c != '\n' && c != '\r' {
			return false
		}
	}
	return true
}

var (
	// An IAM path is any run of U+0021-U+007E between slashes; names keep to [\w+=,.@-].
	roleArnRe         = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/([!-~]*/)?[\w+=,.@-]+$`)
	policyArnRe       = regexp.MustCompile(`^arn:aws[a-z-]*:iam::([0-9]{12}|aws):policy/([!-~]*/)?[\w+=,.@-]+$`)
	sessionNameRe     = regexp.MustCompile(`^[\w+=,.@-]+$`)
	externalIDRe      = regexp.MustCompile(`^[\w+=,.@:/-]+$`)
	tagKeyRe          = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+@-]+$`)
	tagValueRe        = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+@-]*$`)
	targetPrincipal   = regexp.MustCompile(`^([0-9]{12}|arn:aws[a-z-]*:iam::[0-9]{12}:[\w+=,.@/-]+)$`)
	taskPolicyArnRe   = regexp.MustCompile(`^arn:aws[a-z-]*:iam::aws:policy/root-task/[A-Za-z0-9]+$`)
	sessionNameUnsafe = regexp.MustCompile(`[^\w+=,.@-]`)
)

func checkLen(errs *[]error, field, v string, lo, hi int) {
	n := utf8.RuneCountInString(v)
	if n < lo || n > hi {
		*errs = append(*errs, fmt.Errorf("%s must be %d-%d characters, got %d", field, lo, hi, n))
	}
}

// Validate checks every limit AWS documents for AssumeRole, so that a request AWS would refuse
// is refused before it is signed and sent. The error names each offending field.
func (r AssumeRoleRequest) Validate() error {
	var errs []error
	if r.Region != "" && !ValidRegion(r.Region) {
		errs = append(errs, fmt.Errorf("region %q is not an AWS region code", r.Region))
	}
	checkLen(&errs, "roleArn", r.RoleArn, 20, 2048)
	if !roleArnRe.MatchString(r.RoleArn) {
		errs = append(errs, errors.New("roleArn must be an IAM role ARN such as arn:aws:iam::111122223333:role/name"))
	}
	checkLen(&errs, "sessionName", r.SessionName, 2, MaxSessionNameLength)
	if !sessionNameRe.MatchString(r.SessionName) {
		errs = append(errs, errors.New("sessionName may contain only letters, digits and _+=,.@-"))
	}
	maxDuration := int32(MaxDurationSeconds)
	if r.Chained {
		maxDuration = MaxChainedDurationSeconds
	}
	if r.DurationSeconds < MinDurationSeconds || r.DurationSeconds > maxDuration {
		errs = append(errs, fmt.Errorf("durationSeconds must be %d-%d%s, got %d", MinDurationSeconds, maxDuration, map[bool]string{true: " for a chained role", false: ""}[r.Chained], r.DurationSeconds))
	}
	if r.ExternalID != "" {
		checkLen(&errs, "externalId", r.ExternalID, 2, 1224)
		if !externalIDRe.MatchString(r.ExternalID) {
			errs = append(errs, errors.New("externalId may contain only letters, digits and _+=,.@:/-"))
		}
	}
	if r.SourceIdentity != "" {
		checkLen(&errs, "sourceIdentity", r.SourceIdentity, 2, 64)
		if !sessionNameRe.MatchString(r.SourceIdentity) {
			errs = append(errs, errors.New("sourceIdentity may contain only letters, digits and _+=,.@-"))
		}
		if strings.HasPrefix(strings.ToLower(r.SourceIdentity), "aws:") {
			errs = append(errs, errors.New("sourceIdentity must not start with aws: (reserved by AWS)"))
		}
	}
	if r.Policy != "" && !json.Valid([]byte(r.Policy)) {
		errs = append(errs, errors.New("policy is not valid JSON"))
	}
	if !policyChars(r.Policy) {
		errs = append(errs, errors.New("policy may contain only tab, line feed, carriage return and U+0020 to U+00FF: write other characters as JSON escapes"))
	}
	if len(r.PolicyArns) > MaxPolicyArns {
		errs = append(errs, fmt.Errorf("at most %d policyArns, got %d", MaxPolicyArns, len(r.PolicyArns)))
	}
	total := utf8.RuneCountInString(r.Policy)
	for i, arn := range r.PolicyArns {
		total += utf8.RuneCountInString(arn)
		if !policyArnRe.MatchString(arn) || len(arn) > 2048 {
			errs = append(errs, fmt.Errorf("policyArns[%d] must be an IAM policy ARN", i))
		}
	}
	if total > MaxPolicyCharacters {
		errs = append(errs, fmt.Errorf("policy and policyArns together must be at most %d characters, got %d", MaxPolicyCharacters, total))
	}
	errs = append(errs, validateTags(r.Tags, r.TransitiveTagKeys)...)
	return errors.Join(errs...)
}

func validateTags(tags []Tag, transitive []string) []error {
	var errs []error
	if len(tags) > MaxTags {
		errs = append(errs, fmt.Errorf("at most %d tags, got %d", MaxTags, len(tags)))
	}
	seen := make(map[string]bool, len(tags))
	for i, t := range tags {
		if n := utf8.RuneCountInString(t.Key); n < 1 || n > 128 || !tagKeyRe.MatchString(t.Key) {
			errs = append(errs, fmt.Errorf("tags[%d].key must be 1-128 Unicode letters, digits, spaces or _.:/=+-@", i))
		}
		if n := utf8.RuneCountInString(t.Value); n > 256 || !tagValueRe.MatchString(t.Value) {
			errs = append(errs, fmt.Errorf("tags[%d].value must be at most 256 Unicode letters, digits, spaces or _.:/=+-@", i))
		}
		k := strings.ToLower(t.Key)
		if seen[k] {
			errs = append(errs, fmt.Errorf("tags[%d].key %q repeats a key (keys are compared ignoring case)", i, t.Key))
		}
		seen[k] = true
	}
	if len(transitive) > MaxTransitiveTagKeys {
		errs = append(errs, fmt.Errorf("at most %d transitiveTagKeys, got %d", MaxTransitiveTagKeys, len(transitive)))
	}
	for i, k := range transitive {
		if !seen[strings.ToLower(k)] {
			errs = append(errs, fmt.Errorf("transitiveTagKeys[%d] %q names no tag of the request", i, k))
		}
	}
	return errs
}

// Validate checks AssumeRoot's limits, including that a region is set: AssumeRoot is refused on
// the global endpoint.
func (r AssumeRootRequest) Validate() error {
	var errs []error
	if r.Region == "" {
		errs = append(errs, errors.New("AssumeRoot needs a region: it is only served by regional STS endpoints; set spec.region or the operator's --region"))
	} else if !ValidRegion(r.Region) {
		errs = append(errs, fmt.Errorf("region %q is not an AWS region code", r.Region))
	}
	checkLen(&errs, "targetPrincipal", r.TargetPrincipal, 12, 2048)
	if !targetPrincipal.MatchString(r.TargetPrincipal) {
		errs = append(errs, errors.New("targetPrincipal must be a 12-digit account ID or a principal ARN"))
	}
	if !taskPolicyArnRe.MatchString(r.TaskPolicyArn) {
		errs = append(errs, errors.New("taskPolicyArn must be arn:<partition>:iam::aws:policy/root-task/<name>"))
	}
	if r.DurationSeconds < 1 || r.DurationSeconds > MaxRootDurationSeconds {
		errs = append(errs, fmt.Errorf("durationSeconds must be 1-%d for AssumeRoot, got %d", MaxRootDurationSeconds, r.DurationSeconds))
	}
	return errors.Join(errs...)
}

// TaskPolicyArn returns the ARN of an AWS managed root task policy in the partition of region.
func TaskPolicyArn(region, name string) string {
	return "arn:" + Partition(region) + ":iam::aws:policy/root-task/" + name
}

// DefaultSessionName is "<namespace>.<name>" with characters AWS does not allow replaced by '-',
// cut to 64 characters with a stable hash suffix when longer, so distinct objects keep distinct
// names.
func DefaultSessionName(namespace, name string) string {
	s := sessionNameUnsafe.ReplaceAllString(namespace+"."+name, "-")
	if len(s) <= MaxSessionNameLength {
		return s
	}
	sum := sha256.Sum256([]byte(namespace + "/" + name))
	suffix := "-" + hex.EncodeToString(sum[:])[:8]
	return s[:MaxSessionNameLength-len(suffix)] + suffix
}

// Hash returns a sha256 (hex) of the normalized request: the same for requests that AWS would
// treat alike (tag, ARN and transitive-key order, tag-key case, policy whitespace), different
// whenever anything sent to AWS differs. It holds no secret: credentials are not part of a request.
func (r AssumeRoleRequest) Hash() string {
	tags := make([]Tag, len(r.Tags))
	copy(tags, r.Tags)
	sort.Slice(tags, func(i, j int) bool { return strings.ToLower(tags[i].Key) < strings.ToLower(tags[j].Key) })
	arns := sortedCopy(r.PolicyArns, false)
	transitive := sortedCopy(r.TransitiveTagKeys, true)
	return hashOf(struct {
		Op                                 string
		Region, RoleArn, SessionName       string
		Duration                           int32
		ExternalID, SourceIdentity, Policy string
		PolicyArns                         []string
		Tags                               []Tag
		Transitive                         []string
		Chained                            bool
	}{"AssumeRole", r.Region, r.RoleArn, r.SessionName, r.DurationSeconds, r.ExternalID, r.SourceIdentity, compactJSON(r.Policy), arns, tags, transitive, r.Chained})
}

// Hash returns a sha256 (hex) of the normalized AssumeRoot request.
func (r AssumeRootRequest) Hash() string {
	return hashOf(struct {
		Op                                     string
		Region, TargetPrincipal, TaskPolicyArn string
		Duration                               int32
	}{"AssumeRoot", r.Region, r.TargetPrincipal, r.TaskPolicyArn, r.DurationSeconds})
}

func sortedCopy(in []string, lower bool) []string {
	out := make([]string, len(in))
	for i, s := range in {
		if lower {
			s = strings.ToLower(s)
		}
		out[i] = s
	}
	sort.Strings(out)
	return out
}

func compactJSON(s string) string {
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		return s
	}
	return b.String()
}

func hashOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs of strings and ints always marshal
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
