package secretdata_test

import (
	"strings"
	"testing"
	"time"

	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
)

var values = secretdata.TemplateValues{
	AccessKeyID: "ASIAEXAMPLEKEY000001", SecretAccessKey: "exampleSecretKey/0000000000000000000000+", SessionToken: "IQoJb3JpZ2luX2VjEXAMPLETOKEN==",
	Expiration: time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC), Region: "eu-west-1", RoleArn: "arn:aws:iam::111122223333:role/reader", Profile: "reader",
}

func TestRenderTemplatesGolden(t *testing.T) {
	got, err := secretdata.RenderTemplates(map[string]string{
		"boto.json":   `{"aws_access_key_id": {{ quote .AccessKeyID }}, "region": {{ quote .Region }}, "expires": {{ unix .Expiration }}}`,
		"env":         "KEY={{ .AccessKeyID }}\nREGION={{ .Region | upper }}\nUNTIL={{ rfc3339 .Expiration }}\n",
		"basic-auth":  `{{ base64 .SessionToken }}`,
		"conditional": `{{ if eq .Profile "reader" }}read-only{{ else }}other{{ end }} {{ with .Region }}in {{ . }}{{ end }}`,
		"credentials": "[{{ .Profile }}]\nrole_arn = {{ .RoleArn }}\n",
	}, values)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"boto.json":   `{"aws_access_key_id": "ASIAEXAMPLEKEY000001", "region": "eu-west-1", "expires": 1795352400}`,
		"env":         "KEY=ASIAEXAMPLEKEY000001\nREGION=EU-WEST-1\nUNTIL=2026-11-22T13:00:00Z\n",
		"basic-auth":  "SVFvSmIzSnBaMmx1WDJWakVYQU1QTEVUT0tFTj09",
		"conditional": "read-only in eu-west-1",
		"credentials": "[reader]\nrole_arn = arn:aws:iam::111122223333:role/reader\n",
	}
	for k, w := range want {
		if string(got[k]) != w {
			t.Errorf("%s:\n got %q\nwant %q", k, got[k], w)
		}
	}
}

// Hostile or broken templates are refused with a message naming the key, quickly, and without
// echoing credential values.
func TestRenderTemplatesRefuses(t *testing.T) {
	huge := strings.Repeat("{{ .SessionToken }}", 3000) // about 90 KiB of output
	cases := map[string]struct{ tmpl, want string }{
		"huge output":           {huge, "output exceeds the limit"},
		"range over an int":     {`{{ range 1000000000000 }}{{ end }}`, "range is not allowed"},
		"recursive define":      {`{{ define "x" }}{{ template "x" }}{{ end }}{{ template "x" }}`, "define and block are not allowed"},
		"template call":         {`{{ template "y" }}`, "template calls are not allowed"},
		"printf width":          {`{{ printf "%0999999999d" 1 }}`, "printf is not available"},
		"unknown function":      {`{{ env "HOME" }}`, `function "env" not defined`},
		"unknown field":         {`{{ .OtherSecret }}`, "can't evaluate field OtherSecret"},
		"syntax":                {`{{ .AccessKeyID `, "unclosed action"},
		"nested range in if":    {`{{ if true }}{{ range 5 }}x{{ end }}{{ end }}`, "range is not allowed"},
		"wrong type for a func": {`{{ unix .SecretAccessKey }}`, "wrong type"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := secretdata.RenderTemplates(map[string]string{"out": c.tmpl}, values)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "template out") {
				t.Fatalf("got %v, want an error about key out containing %q", err, c.want)
			}
			if strings.Contains(err.Error(), values.SecretAccessKey) || strings.Contains(err.Error(), values.SessionToken) {
				t.Errorf("error carries credential material: %v", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
	if _, err := secretdata.RenderTemplates(map[string]string{"AWS_SECRET_ACCESS_KEY": "x"}, values); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("replacing a credential key: %v", err)
	}
	// The total over all keys is limited too.
	many := map[string]string{}
	for i := range 10 {
		many[string(rune('a'+i))] = strings.Repeat("{{ .SessionToken }}", 2000) // 60 KiB each
	}
	if _, err := secretdata.RenderTemplates(many, values); err == nil || !strings.Contains(err.Error(), "output exceeds the limit") {
		t.Errorf("600 KiB in total: %v", err)
	}
}

func TestTemplateFunctionsDocumented(t *testing.T) {
	if got := strings.Join(secretdata.TemplateFunctions(), ","); got != "base64,base64url,lower,quote,rfc3339,trim,unix,upper" {
		t.Errorf("functions %s: update the README's list", got)
	}
}
