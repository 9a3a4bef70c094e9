package secretdata

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
)

// Limits of secret.template.
const (
	// MaxTemplateOutput is the largest value one template may render.
	MaxTemplateOutput = 64 << 10
	// MaxTemplatesOutput is the largest total the templates of one Secret may render.
	MaxTemplatesOutput = 512 << 10
)

// TemplateValues are what a template can read. Templates see nothing else: no other Secret, no
// environment, no file.
type TemplateValues struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Expiration      time.Time
	Region          string
	RoleArn         string
	Profile         string
}

// ReservedKeys are the keys templates may not replace: the credentials the operator reads back
// from the Secret.
var ReservedKeys = []string{KeyAccessKeyID, KeySecretAccessKey, KeySessionToken, KeyCredentialExpiration}

// templateFuncs is the whole function set. printf, print and println are replaced because a
// width such as %0999999999d allocates before any output limit can act.
var templateFuncs = template.FuncMap{
	"base64":    func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) },
	"base64url": func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) },
	"upper":     strings.ToUpper,
	"lower":     strings.ToLower,
	"trim":      strings.TrimSpace,
	"quote": func(s string) (string, error) {
		b, err := json.Marshal(s)
		return string(b), err
	},
	"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"unix":    func(t time.Time) int64 { return t.Unix() },
	"printf":  func(...any) (string, error) { return "", errors.New("printf is not available in secret templates") },
	"print":   func(...any) (string, error) { return "", errors.New("print is not available in secret templates") },
	"println": func(...any) (string, error) { return "", errors.New("println is not available in secret templates") },
}

// TemplateFunctions lists the functions templates may call besides text/template's comparisons
// and logic.
func TemplateFunctions() []string {
	var out []string
	for name := range templateFuncs {
		if !strings.HasPrefix(name, "print") {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// RenderTemplates renders each template with v. It refuses templates that could run unbounded
// (range, define/template, break/continue), unknown functions and fields, reserved keys, and
// output over the limits; the error names the key.
func RenderTemplates(tmpls map[string]string, v TemplateValues) (map[string][]byte, error) {
	keys := make([]string, 0, len(tmpls))
	for k := range tmpls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string][]byte, len(tmpls))
	total := 0
	for _, key := range keys {
		for _, r := range ReservedKeys {
			if key == r {
				return nil, fmt.Errorf("template key %s is reserved for the credentials the operator reads back", key)
			}
		}
		t, err := template.New(key).Option("missingkey=error").Funcs(templateFuncs).Parse(tmpls[key])
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", key, err)
		}
		if len(t.Templates()) > 1 {
			return nil, fmt.Errorf("template %s: define and block are not allowed", key)
		}
		if err := bounded(t.Root); err != nil {
			return nil, fmt.Errorf("template %s: %w", key, err)
		}
		w := &limitedBuffer{limit: min(MaxTemplateOutput, MaxTemplatesOutput-total)}
		if err := t.Execute(w, v); err != nil {
			return nil, fmt.Errorf("template %s: %w", key, unwrapExec(err))
		}
		total += len(w.buf)
		out[key] = w.buf
	}
	return out, nil
}

// bounded rejects the nodes that can make execution run longer than the template is long.
func bounded(n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := bounded(c); err != nil {
				return err
			}
		}
	case *parse.RangeNode:
		return errors.New("range is not allowed")
	case *parse.TemplateNode:
		return errors.New("template calls are not allowed")
	case *parse.BreakNode, *parse.ContinueNode:
		return errors.New("break and continue are not allowed")
	case *parse.IfNode:
		return branches(n.List, n.ElseList)
	case *parse.WithNode:
		return branches(n.List, n.ElseList)
	}
	return nil
}

func branches(a, b *parse.ListNode) error {
	if err := bounded(a); err != nil {
		return err
	}
	return bounded(b)
}

var errTooLong = errors.New("output exceeds the limit")

type limitedBuffer struct {
	buf   []byte
	limit int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if len(l.buf)+len(p) > l.limit {
		return 0, fmt.Errorf("%w of %d bytes", errTooLong, l.limit)
	}
	l.buf = append(l.buf, p...)
	return len(p), nil
}

// unwrapExec keeps text/template's message short and free of the data it was executing on.
func unwrapExec(err error) error {
	var execErr template.ExecError
	if errors.As(err, &execErr) {
		return errors.New(strings.TrimPrefix(execErr.Err.Error(), "template: "))
	}
	return err
}
