package sts

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
)

// Codes rolekeeper uses for failures that never got an AWS error code.
const (
	CodeNetwork          = "NetworkError"
	CodeTimeout          = "Timeout"
	CodeInvalidRequest   = "InvalidRequest" // refused locally before sending
	CodeUnknown          = "Unknown"
	CodeRateLimitWaiting = "ClientRateLimited"
	// CodeRegionUnknown: the regional STS endpoint's host name does not exist in DNS, so the
	// region does not exist (or not in the partition its name suggests). No retry fixes it.
	CodeRegionUnknown = "RegionUnknown"
)

// terminalCodes are AWS errors that no retry fixes: the request, the role's trust policy or the
// caller's identity has to change first.
var terminalCodes = map[string]bool{
	"AccessDenied":                true,
	"AccessDeniedException":       true,
	"MalformedPolicyDocument":     true,
	"PackedPolicyTooLarge":        true,
	"RegionDisabledException":     true,
	"ValidationError":             true,
	"InvalidClientTokenId":        true,
	"InvalidParameterValue":       true,
	"InvalidParameterCombination": true,
	"MissingParameter":            true,
	"SignatureDoesNotMatch":       true,
	"IncompleteSignature":         true,
	"InvalidAction":               true,
	"OptInRequired":               true,
	"UnrecognizedClientException": true,
	"InvalidParameterException":   true, // ECR
	CodeInvalidRequest:            true,
	CodeRegionUnknown:             true,
}

// retryableCodes are AWS errors that clear up by themselves.
var retryableCodes = map[string]bool{
	"Throttling":                true,
	"ThrottlingException":       true,
	"ThrottledException":        true,
	"RequestThrottled":          true,
	"RequestThrottledException": true,
	"TooManyRequestsException":  true,
	"RequestLimitExceeded":      true,
	"SlowDown":                  true,
	"ServiceUnavailable":        true,
	"InternalFailure":           true,
	"InternalError":             true,
	"InternalServerError":       true,
	"RequestTimeout":            true,
	"RequestTimeoutException":   true,
	"RequestExpired":            true, // clock skew; the SDK corrects its offset on retry
	// The credentials that signed the call expired: the operator's own session rolled over
	// while the call was on its way, or a chain source rotated. The next attempt signs with
	// fresh ones.
	"ExpiredToken":            true,
	"ExpiredTokenException":   true,
	"IDPCommunicationError":   true,
	"PriorRequestNotComplete": true,
	"ServerException":         true, // ECR
	CodeNetwork:               true,
	CodeTimeout:               true,
	CodeRateLimitWaiting:      true,
}

// Error is a failed STS call: the AWS error code, whether a retry can help, and a message with
// no credential material.
type Error struct {
	Operation  string
	Code       string
	Message    string
	RequestID  string
	HTTPStatus int
	Retryable  bool
	err        error
}

func (e *Error) Error() string {
	var b strings.Builder
	service := "sts"
	if e.Operation == "GetAuthorizationToken" {
		service = "ecr"
	}
	fmt.Fprintf(&b, "%s %s: %s", service, e.Operation, e.Code)
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RequestID != "" {
		b.WriteString(" (request id " + e.RequestID + ")")
	}
	return b.String()
}

// Unwrap returns the underlying error (for errors.Is with context errors).
func (e *Error) Unwrap() error { return e.err }

// Code returns the AWS error code of err, or "" when err is not an STS error.
func Code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// IsRetryable reports whether err is expected to clear up without any change (throttling, 5xx,
// network, timeouts). Terminal errors and non-STS errors are not retryable.
func IsRetryable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Retryable
}

// Classify turns an error from an aws-sdk-go-v2 STS call into an *Error with its AWS code and
// retry class; nil stays nil.
func Classify(op string, err error) error {
	if e := classify(op, err); e != nil {
		return e
	}
	return nil
}

func classify(op string, err error) *Error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return already
	}
	e := &Error{Operation: op, err: err}
	var apiErr smithy.APIError
	var respErr *awshttp.ResponseError
	if errors.As(err, &respErr) {
		e.RequestID = respErr.ServiceRequestID()
		e.HTTPStatus = respErr.HTTPStatusCode()
	}
	var netErr net.Error
	switch {
	case errors.As(err, &apiErr):
		e.Code = apiErr.ErrorCode()
		e.Message = Redact(apiErr.ErrorMessage())
	case errors.Is(err, context.DeadlineExceeded):
		e.Code, e.Message = CodeTimeout, "the call to STS timed out"
	case errors.Is(err, context.Canceled):
		e.Code, e.Message = CodeTimeout, "the call to STS was cancelled"
	case errors.As(err, &netErr):
		e.Code, e.Message = CodeNetwork, Redact(netErr.Error())
	case e.HTTPStatus >= 500:
		e.Code, e.Message = "ServiceUnavailable", fmt.Sprintf("STS answered HTTP %d", e.HTTPStatus)
	default:
		// Transport failures that are not net.Errors (connection reset mid-body, EOF).
		msg := err.Error()
		if strings.Contains(msg, "EOF") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "connection refused") || strings.Contains(msg, "send request failed") {
			e.Code = CodeNetwork
		} else {
			e.Code = CodeUnknown
		}
		e.Message = Redact(msg)
	}
	switch {
	case terminalCodes[e.Code]:
		e.Retryable = false
	case retryableCodes[e.Code]:
		e.Retryable = true
	default:
		// Unknown codes: a server-side status is worth retrying, a client-side one is not.
		e.Retryable = e.HTTPStatus == 0 || e.HTTPStatus >= 500 || e.HTTPStatus == 429
	}
	if len(e.Message) > 512 {
		e.Message = e.Message[:512] + "…"
	}
	return e
}

var (
	accessKeyRe = regexp.MustCompile(`\b(AKIA|ASIA|AIDA|AROA|ABIA|ACCA)[A-Z0-9]{12,}\b`)
	// Secret keys are 40 base64 characters and session tokens are hundreds, mixing upper case,
	// lower case and digits; ARNs and words break such runs with '-', ':' or '.'.
	longTokenRe = regexp.MustCompile(`[A-Za-z0-9/+=]{40,}`)
	signatureRe = regexp.MustCompile(`(?i)(signature|x-amz-security-token|authorization|credential)([=:]\s*)\S+`)
)

// Redact removes anything that could be a key id, a secret key, a session token or a signature
// from a message that came from AWS or the network, before it reaches a log, event or condition.
func Redact(s string) string {
	s = signatureRe.ReplaceAllString(s, "$1$2[REDACTED]")
	s = accessKeyRe.ReplaceAllString(s, "[REDACTED]")
	return longTokenRe.ReplaceAllStringFunc(s, func(run string) string {
		if strings.ContainsAny(run, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") && strings.ContainsAny(run, "abcdefghijklmnopqrstuvwxyz") && strings.ContainsAny(run, "0123456789") {
			return "[REDACTED]"
		}
		return run
	})
}
