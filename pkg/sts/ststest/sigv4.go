package ststest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// sigV4 is a parsed Authorization header of an AWS Signature Version 4 request: HMAC-signed
// (AWS4-HMAC-SHA256, AccessKeyID names the key) or signed with an X.509 certificate's key, as
// IAM Roles Anywhere's CreateSession is (AWS4-X509-RSA-SHA256 or AWS4-X509-ECDSA-SHA256,
// AccessKeyID holds the certificate's serial number in decimal).
type sigV4 struct {
	Algorithm     string
	AccessKeyID   string
	Date          string // yyyymmdd of the credential scope
	Region        string
	Service       string
	SignedHeaders []string
	Signature     string
}

var errUnsigned = errors.New("request is not signed with AWS Signature Version 4")

func parseAuthorization(h string) (*sigV4, error) {
	return parseSignedAuthorization(h, algoHMAC)
}

const (
	algoHMAC      = "AWS4-HMAC-SHA256"
	algoX509RSA   = "AWS4-X509-RSA-SHA256"
	algoX509ECDSA = "AWS4-X509-ECDSA-SHA256"
)

// parseSignedAuthorization parses an Authorization header signed with one of algorithms.
func parseSignedAuthorization(h string, algorithms ...string) (*sigV4, error) {
	algo, rest, _ := strings.Cut(h, " ")
	known := false
	for _, a := range algorithms {
		known = known || a == algo
	}
	if !known {
		return nil, errUnsigned
	}
	s := &sigV4{Algorithm: algo}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("malformed Authorization component %q", part)
		}
		switch k {
		case "Credential":
			scope := strings.Split(v, "/")
			if len(scope) != 5 || scope[4] != "aws4_request" {
				return nil, fmt.Errorf("malformed credential scope")
			}
			s.AccessKeyID, s.Date, s.Region, s.Service = scope[0], scope[1], scope[2], scope[3]
		case "SignedHeaders":
			s.SignedHeaders = strings.Split(v, ";")
		case "Signature":
			s.Signature = v
		}
	}
	if s.AccessKeyID == "" || s.Signature == "" || len(s.SignedHeaders) == 0 {
		return nil, errors.New("the Authorization header lacks Credential, SignedHeaders or Signature")
	}
	return s, nil
}

// verify recomputes the signature of r (whose body is body) with secret and compares it with the
// one the client sent. It follows the published Signature Version 4 algorithm: canonical request,
// string to sign, derived signing key.
func (s *sigV4) verify(r *http.Request, body []byte, secret string, now time.Time, maxSkew time.Duration) error {
	stringToSign, err := s.stringToSign(r, body, now, maxSkew)
	if err != nil {
		return err
	}
	key := hmacSHA256([]byte("AWS4"+secret), s.Date)
	key = hmacSHA256(key, s.Region)
	key = hmacSHA256(key, s.Service)
	key = hmacSHA256(key, "aws4_request")
	want := hex.EncodeToString(hmacSHA256(key, stringToSign))
	if !hmac.Equal([]byte(want), []byte(s.Signature)) {
		return errBadSignature
	}
	return nil
}

// stringToSign checks the request's date and signed headers and returns the string the client
// signed, by the published algorithm: canonical request, then its hash under the scope.
func (s *sigV4) stringToSign(r *http.Request, body []byte, now time.Time, maxSkew time.Duration) (string, error) {
	amzDate := r.Header.Get("X-Amz-Date")
	t, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil {
		return "", fmt.Errorf("missing or malformed X-Amz-Date")
	}
	if d := now.Sub(t); d > maxSkew || d < -maxSkew {
		return "", errSkew
	}
	if !strings.HasPrefix(amzDate, s.Date) {
		return "", errors.New("credential scope date does not match X-Amz-Date")
	}
	signsHost := false
	for _, h := range s.SignedHeaders {
		signsHost = signsHost || h == "host"
	}
	if !signsHost {
		return "", errors.New("the host header must be signed")
	}
	payloadHash := r.Header.Get("X-Amz-Content-Sha256")
	if payloadHash == "" || payloadHash == "UNSIGNED-PAYLOAD" {
		sum := sha256.Sum256(body)
		payloadHash = hex.EncodeToString(sum[:])
	}
	var canon strings.Builder
	canon.WriteString(r.Method + "\n")
	canon.WriteString(canonicalURI(r.URL) + "\n")
	canon.WriteString(canonicalQuery(r.URL.Query()) + "\n")
	for _, h := range s.SignedHeaders {
		canon.WriteString(h + ":" + canonicalHeaderValue(r, h) + "\n")
	}
	canon.WriteString("\n" + strings.Join(s.SignedHeaders, ";") + "\n" + payloadHash)

	scope := strings.Join([]string{s.Date, s.Region, s.Service, "aws4_request"}, "/")
	crHash := sha256.Sum256([]byte(canon.String()))
	return s.Algorithm + "\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(crHash[:]), nil
}

var (
	errBadSignature = errors.New("signature mismatch")
	errSkew         = errors.New("request time too skewed")
)

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func canonicalHeaderValue(r *http.Request, name string) string {
	var values []string
	switch name {
	case "host":
		values = []string{r.Host}
	case "content-length":
		values = []string{fmt.Sprint(r.ContentLength)}
	default:
		values = r.Header.Values(name)
	}
	for i, v := range values {
		values[i] = strings.Join(strings.Fields(v), " ")
	}
	return strings.Join(values, ",")
}

func canonicalURI(u *url.URL) string {
	p := u.EscapedPath()
	if p == "" {
		return "/"
	}
	return p
}

func canonicalQuery(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		vs := append([]string(nil), q[k]...)
		sort.Strings(vs)
		for _, v := range vs {
			parts = append(parts, uriEncode(k)+"="+uriEncode(v))
		}
	}
	return strings.Join(parts, "&")
}

func uriEncode(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if ('A' <= c && c <= 'Z') || ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
