package secretdata

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
)

// Limits of secret.template. A template is written by whoever may edit an AssumedRole, so what
// rendering it may cost is bounded before it runs: no loops, every value it can build at most
// MaxTemplateValue bytes, and all the work of one Secret's templates at most MaxTemplateWork
// bytes. Output limits alone would not do: a value is built in memory before any of it is
// written.
const (
	// MaxTemplateOutput is the largest value one template may render.
	MaxTemplateOutput = 64 << 10
	// MaxTemplatesOutput is the largest total the templates of one Secret may render.
	MaxTemplatesOutput = 512 << 10
	// MaxTemplateValue is the largest value a function may return or take apart.
	MaxTemplateValue = MaxTemplateOutput
	// MaxTemplateWork bounds what the templates of one Secret may do: every byte a function
	// reads, builds or compares counts.
	MaxTemplateWork = 1 << 20
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

// StandIn returns credentials of the largest sizes the operator expects from STS (128-character
// key ids, a 4 KiB session token), expiring at exp. A template is rendered with them before
// anything is issued: its work grows with the size of what it reads, so one that renders within
// the limits with these renders with real credentials too.
func StandIn(exp time.Time) Input {
	return Input{
		AccessKeyID: strings.Repeat("A", 128), SecretAccessKey: strings.Repeat("S", 128), SessionToken: strings.Repeat("T", 4096),
		Expiration: exp,
	}
}

// ReservedKeys are the keys templates may not replace: the credentials the operator reads back
// from the Secret.
var ReservedKeys = []string{KeyAccessKeyID, KeySecretAccessKey, KeySessionToken, KeyCredentialExpiration}

// userFunctions are the functions README documents, besides text/template's comparisons and
// logic.
var userFunctions = []string{"base64", "base64url", "lower", "quote", "rfc3339", "trim", "unix", "upper"}

// TemplateFunctions lists the functions templates may call besides text/template's comparisons
// and logic.
func TemplateFunctions() []string { return append([]string(nil), userFunctions...) }

var (
	errTooLong   = errors.New("output exceeds the limit")
	errTooBig    = fmt.Errorf("builds a value over the limit of %d bytes", MaxTemplateValue)
	errTooCostly = fmt.Errorf("does more work than the limit of %d bytes allows", MaxTemplateWork)
)

// meter charges every byte a template function touches against the budget of one render, and
// refuses values over MaxTemplateValue before they are returned.
type meter struct{ left int }

func (m *meter) charge(n int) error {
	if n > m.left {
		m.left = 0
		return errTooCostly
	}
	m.left -= n
	return nil
}

// result checks and charges a value a function built.
func (m *meter) result(s string) (string, error) {
	if len(s) > MaxTemplateValue {
		return "", errTooBig
	}
	return s, m.charge(len(s))
}

// grow runs a function of one string whose result is at most factor times as long, charging the
// input first and refusing an input whose result could be too large before building it.
func (m *meter) grow(factor int, f func(string) string) func(string) (string, error) {
	return func(s string) (string, error) {
		if len(s) > MaxTemplateValue/factor {
			return "", errTooBig
		}
		if err := m.charge(len(s)); err != nil {
			return "", err
		}
		return m.result(f(s))
	}
}

// joined is the text of a function's arguments, as text/template's own html, js and urlquery
// format them, after charging their size.
func (m *meter) joined(factor int, args []any) (string, error) {
	n := 0
	for _, a := range args {
		n += size(a)
	}
	if n > MaxTemplateValue/factor {
		return "", errTooBig
	}
	if err := m.charge(n); err != nil {
		return "", err
	}
	if len(args) == 1 {
		if s, ok := args[0].(string); ok {
			return s, nil
		}
	}
	return fmt.Sprint(args...), nil
}

// size is what a value costs to read or format: its length for text, a small constant for the
// numbers, booleans and times templates can hold.
func size(v any) int {
	switch v := v.(type) {
	case string:
		return len(v)
	case []byte:
		return len(v)
	default:
		return 32
	}
}

// funcs is the whole function set of one render, every function metered. text/template's own
// html, js, urlquery, slice, index and comparisons are replaced by metered equivalents; print,
// printf, println and call are refused (a width such as %0999999999d allocates before any limit
// could act). len, and, or and not build nothing and stay as they are.
func (m *meter) funcs() template.FuncMap {
	refuse := func(name string) func(...any) (string, error) {
		return func(...any) (string, error) { return "", fmt.Errorf("%s is not available in secret templates", name) }
	}
	escape := func(factor int, f func(string) string) func(...any) (string, error) {
		return func(args ...any) (string, error) {
			s, err := m.joined(factor, args)
			if err != nil {
				return "", err
			}
			return m.result(f(s))
		}
	}
	return template.FuncMap{
		// base64 output is 4/3 of the input, rounded up to whole groups: at most twice as long.
		"base64":    m.grow(2, func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }),
		"base64url": m.grow(2, func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }),
		// Changing case can turn a two-byte character into a three-byte one.
		"upper": m.grow(2, strings.ToUpper),
		"lower": m.grow(2, strings.ToLower),
		"trim":  m.grow(1, strings.TrimSpace),
		// JSON escapes a control character as \u00XX: six bytes for one.
		"quote": m.grow(6, func(s string) string {
			b, _ := json.Marshal(s) // a string always marshals
			return string(b)
		}),
		"rfc3339": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"unix":    func(t time.Time) int64 { return t.Unix() },

		"html":     escape(6, template.HTMLEscapeString), // " becomes &#34;
		"js":       escape(6, template.JSEscapeString),   // < becomes \u003C
		"urlquery": escape(3, url.QueryEscape),           // a byte becomes %XX
		"slice":    m.slice,
		"index":    m.index,
		"eq":       m.eq,
		"ne":       func(a, b any) (bool, error) { eq, err := m.eq(a, b); return !eq, err },
		"lt":       func(a, b any) (bool, error) { return m.order(a, b, func(c int) bool { return c < 0 }) },
		"le":       func(a, b any) (bool, error) { return m.order(a, b, func(c int) bool { return c <= 0 }) },
		"gt":       func(a, b any) (bool, error) { return m.order(a, b, func(c int) bool { return c > 0 }) },
		"ge":       func(a, b any) (bool, error) { return m.order(a, b, func(c int) bool { return c >= 0 }) },

		"print":   refuse("print"),
		"printf":  refuse("printf"),
		"println": refuse("println"),
		"call":    refuse("call"),
	}
}

// slice returns s[i:j] of a string, the only kind of value templates can slice.
func (m *meter) slice(v any, idx ...int) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("slice of %T: only text can be sliced", v)
	}
	lo, hi := 0, len(s)
	switch len(idx) {
	case 0:
	case 1:
		lo = idx[0]
	case 2:
		lo, hi = idx[0], idx[1]
	default:
		return "", errors.New("slice of text takes at most two indexes")
	}
	if lo < 0 || hi < lo || hi > len(s) {
		return "", fmt.Errorf("slice index out of range: [%d:%d] of %d bytes", lo, hi, len(s))
	}
	return s[lo:hi], m.charge(hi - lo)
}

// index returns the byte at i of a string, the only kind of value templates can index.
func (m *meter) index(v any, idx ...int) (byte, error) {
	s, ok := v.(string)
	if !ok || len(idx) != 1 {
		return 0, fmt.Errorf("index of %T: only text can be indexed, with one index", v)
	}
	if idx[0] < 0 || idx[0] >= len(s) {
		return 0, fmt.Errorf("index out of range: %d of %d bytes", idx[0], len(s))
	}
	return s[idx[0]], m.charge(1)
}

// eq reports whether a equals any of bs, as text/template's eq does, charging each comparison.
func (m *meter) eq(a any, bs ...any) (bool, error) {
	if len(bs) == 0 {
		return false, errors.New("missing argument for comparison")
	}
	for _, b := range bs {
		if err := m.charge(size(a) + size(b)); err != nil {
			return false, err
		}
		c, err := compare(a, b, true)
		if err != nil {
			return false, err
		}
		if c == 0 {
			return true, nil
		}
	}
	return false, nil
}

func (m *meter) order(a, b any, holds func(int) bool) (bool, error) {
	if err := m.charge(size(a) + size(b)); err != nil {
		return false, err
	}
	c, err := compare(a, b, false)
	return err == nil && holds(c), err
}

// compare orders two values of the kinds templates hold: text, integers (signed and unsigned
// compare by value, as text/template does), floats, booleans and times (equality only).
func compare(a, b any, equality bool) (int, error) {
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y), nil
		}
	case bool:
		if y, ok := b.(bool); ok && equality {
			if x == y {
				return 0, nil
			}
			return 1, nil
		}
	case float64:
		if y, ok := b.(float64); ok {
			return cmpOrdered(x, y), nil
		}
	case time.Time:
		if y, ok := b.(time.Time); ok && equality {
			if x.Equal(y) {
				return 0, nil
			}
			return 1, nil
		}
	default:
		if xi, xSigned, ok := integer(a); ok {
			if yi, ySigned, ok := integer(b); ok {
				return cmpIntegers(xi, xSigned, yi, ySigned), nil
			}
		}
	}
	if equality {
		return 0, fmt.Errorf("incompatible types for comparison: %T and %T", a, b)
	}
	return 0, fmt.Errorf("invalid types for ordering: %T and %T", a, b)
}

// integer widens any Go integer to 64 bits; signed says how to read the bits.
func integer(v any) (bits uint64, signed, ok bool) {
	switch v := v.(type) {
	case int:
		return uint64(v), true, true
	case int8:
		return uint64(v), true, true
	case int16:
		return uint64(v), true, true
	case int32:
		return uint64(v), true, true
	case int64:
		return uint64(v), true, true
	case uint:
		return uint64(v), false, true
	case uint8:
		return uint64(v), false, true
	case uint16:
		return uint64(v), false, true
	case uint32:
		return uint64(v), false, true
	case uint64:
		return v, false, true
	}
	return 0, false, false
}

func cmpIntegers(x uint64, xSigned bool, y uint64, ySigned bool) int {
	switch {
	case xSigned && ySigned:
		return cmpOrdered(int64(x), int64(y))
	case xSigned && int64(x) < 0:
		return -1
	case ySigned && int64(y) < 0:
		return 1
	default:
		return cmpOrdered(x, y)
	}
}

func cmpOrdered[T int64 | uint64 | float64](x, y T) int {
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// RenderTemplates renders each template with v. It refuses templates that could run unbounded
// (range, define/template, break/continue), unknown functions and fields, reserved keys, values
// and output over the limits, and work over MaxTemplateWork across all keys; the error names the
// key.
func RenderTemplates(tmpls map[string]string, v TemplateValues) (map[string][]byte, error) {
	keys := make([]string, 0, len(tmpls))
	for k := range tmpls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	m := &meter{left: MaxTemplateWork}
	funcs := m.funcs()
	out := make(map[string][]byte, len(tmpls))
	total := 0
	for _, key := range keys {
		for _, r := range ReservedKeys {
			if key == r {
				return nil, fmt.Errorf("template key %s is reserved for the credentials the operator reads back", key)
			}
		}
		t, err := template.New(key).Option("missingkey=error").Funcs(funcs).Parse(tmpls[key])
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
