package secretdata_test

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
)

// maxRenderAlloc is what rendering any admitted template may allocate: the work budget, the
// output limit and text/template's own bookkeeping, with room to spare.
const maxRenderAlloc = 5 << 20

// Templates of the largest admitted size: 16 keys of 4096 characters.
const (
	maxKeys        = 16
	maxTemplateLen = 4096
)

// standIn is what the operator renders a template with before issuing: the largest credentials.
func standIn() secretdata.TemplateValues {
	in := secretdata.StandIn(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC))
	return secretdata.TemplateValues{AccessKeyID: in.AccessKeyID, SecretAccessKey: in.SecretAccessKey, SessionToken: in.SessionToken,
		Expiration: in.Expiration, Region: "eu-west-1", RoleArn: "arn:aws:iam::111122223333:role/reader", Profile: "default"}
}

// render renders tmpls with the stand-in credentials and returns the error and the bytes
// allocated while rendering.
func render(tmpls map[string]string) (uint64, error) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := secretdata.RenderTemplates(tmpls, standIn())
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, err
}

// nest wraps inner in depth calls of fn: fn (fn (... inner)).
func nest(fn string, depth int, inner string) string {
	return strings.Repeat("("+fn+" ", depth) + inner + strings.Repeat(")", depth)
}

// fill repeats part after head until the template reaches n characters, then closes with tail.
func fill(head, part, tail string, n int) string {
	var b strings.Builder
	b.WriteString(head)
	for b.Len()+len(part)+len(tail) <= n {
		b.WriteString(part)
	}
	b.WriteString(tail)
	return b.String()
}

// hostile are templates built to grow or to work without bound. Each would allocate gigabytes or
// run for seconds if only output were limited; each must be refused within the bounds.
func hostile() map[string]map[string]string {
	reassign := "{{ $x := .SessionToken }}" + strings.Repeat("{{ $x = base64 $x }}\n", 30) + "{{ len $x }}"
	quotes := `{{ $q := "` + strings.Repeat(`\"`, 1500) + `" }}`
	// Eight rounds of base64 make a 40 KiB value; copying it in every statement that fits in the
	// admitted length is 8 MiB of work.
	slow := fill("{{ $x := "+nest("base64", 8, ".SessionToken")+" }}", "{{ $y := upper $x }}", "", maxTemplateLen)
	// Two equal 10 KiB values in different memory: every comparison reads both in full.
	slowEverywhere := map[string]string{}
	for i := range maxKeys {
		slowEverywhere[string(rune('a'+i))] = fill("{{ $x := "+nest("base64", 3, ".SessionToken")+" }}{{ $y := "+nest("base64", 3, ".SessionToken")+" }}{{ if and",
			" (eq $x $y)", " }}y{{ end }}", maxTemplateLen)
	}
	return map[string]map[string]string{
		"base64 nested 40 deep":            {"x": "{{ len " + nest("base64", 40, ".SessionToken") + " }}"},
		"30 reassignments of base64":       {"x": reassign},
		"js nested 40 deep":                {"x": "{{ len " + nest("js", 40, "(quote .SessionToken)") + " }}"},
		"html nested over quotes":          {"x": quotes + "{{ len " + nest("html", 20, "$q") + " }}"},
		"urlquery over many arguments":     {"x": fill("{{ len (urlquery .SessionToken", " .SessionToken", ") }}", maxTemplateLen)},
		"html over many arguments":         {"x": fill("{{ len (html .SessionToken", " .SessionToken", ") }}", maxTemplateLen)},
		"quote nested 12 deep":             {"x": "{{ len " + nest("quote", 12, "(js (quote .SessionToken))") + " }}"},
		"upper nested over base64":         {"x": "{{ len " + nest("upper", 30, nest("base64", 9, ".SessionToken")) + " }}"},
		"maximum length, built to be slow": {"x": slow},
		"16 keys of maximum length":        slowEverywhere,
	}
}

// Every hostile template is refused, and rendering it allocates less than maxRenderAlloc.
func TestRenderTemplatesBoundsWork(t *testing.T) {
	for name, tmpls := range hostile() {
		t.Run(name, func(t *testing.T) {
			for k, v := range tmpls {
				if len(v) > maxTemplateLen {
					t.Fatalf("template %s is %d characters: admission refuses more than %d", k, len(v), maxTemplateLen)
				}
			}
			alloc, err := render(tmpls)
			if err == nil {
				t.Fatal("rendered; want it refused")
			}
			if !strings.Contains(err.Error(), "limit") {
				t.Errorf("refused for another reason than a limit: %v", err)
			}
			if alloc > maxRenderAlloc {
				t.Errorf("allocated %d bytes while rendering, more than %d", alloc, maxRenderAlloc)
			}
		})
	}
}

// The same constructions at a modest size render: the limits refuse growth, not the functions.
func TestRenderTemplatesModestUseRenders(t *testing.T) {
	got, err := secretdata.RenderTemplates(map[string]string{
		"base64x3": "{{ len " + nest("base64", 3, ".SessionToken") + " }}",
		"reassign": "{{ $x := .AccessKeyID }}{{ $x = base64 $x }}{{ $x = base64 $x }}{{ len $x }}",
		"js":       "{{ js (js (quote .Region)) }}",
		"html":     `{{ html "<a href=\"x\">" }}`,
		"urlquery": "{{ urlquery .RoleArn }}",
		"compare":  `{{ if eq .Region "eu-west-1" "us-east-1" }}known{{ end }} {{ if lt (len .SessionToken) 5000 }}short{{ end }} {{ if ne .Profile "x" }}ne{{ end }}`,
		"slice":    "{{ slice .AccessKeyID 0 4 }} {{ index .Region 0 }} {{ slice .Region 3 }}",
		"logic":    `{{ if and .Region (not (eq .Profile "")) }}yes{{ end }}{{ or "" "fallback" }}`,
	}, standIn())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"base64x3": "9720",
		"reassign": "232",
		"js":       `\\\"eu-west-1\\\"`,
		"html":     "&lt;a href=&#34;x&#34;&gt;",
		"urlquery": "arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Freader",
		"compare":  "known short ne",
		"slice":    "AAAA 101 west-1",
		"logic":    "yesfallback",
	}
	for k, w := range want {
		if string(got[k]) != w {
			t.Errorf("%s: got %q, want %q", k, got[k], w)
		}
	}
}

// Functions that would format without bound, or call what templates cannot see, are refused.
func TestRenderTemplatesRefusesFormattingAndCalls(t *testing.T) {
	for _, tmpl := range []string{`{{ print .SessionToken }}`, `{{ println 1 }}`, `{{ printf "%d" 1 }}`, `{{ call .Expiration.String }}`,
		`{{ slice .Region 1 2 3 }}`, `{{ index .Region 99 }}`, `{{ eq .Region 1 }}`, `{{ lt true false }}`} {
		if _, err := secretdata.RenderTemplates(map[string]string{"x": tmpl}, standIn()); err == nil {
			t.Errorf("%s rendered; want it refused", tmpl)
		}
	}
}

// Whatever a template says, rendering it costs less than maxRenderAlloc.
func FuzzRenderTemplatesAllocation(f *testing.F) {
	for _, tmpls := range hostile() {
		for _, v := range tmpls {
			f.Add(v)
		}
	}
	f.Add(`{{ quote .SessionToken }}{{ if eq .Region "x" }}{{ base64url .AccessKeyID }}{{ end }}`)
	f.Fuzz(func(t *testing.T, tmpl string) {
		if len(tmpl) > maxTemplateLen {
			t.Skip("longer than admission allows")
		}
		if alloc, _ := render(map[string]string{"x": tmpl}); alloc > maxRenderAlloc {
			t.Fatalf("allocated %d bytes rendering a %d-character template", alloc, len(tmpl))
		}
	})
}
