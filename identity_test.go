package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The manager refuses an identity it cannot use, naming the missing piece.
func TestIdentityFlags(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("eyJhbGciOiJSUzI1NiJ9.e30.c2ln"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	const role = "arn:aws:iam::111122223333:role/rolekeeper"
	raFlags := "--identity=roles-anywhere --roles-anywhere-trust-anchor-arn=arn:aws:rolesanywhere:us-east-1:111122223333:trust-anchor/0b1c --roles-anywhere-profile-arn=arn:aws:rolesanywhere:us-east-1:111122223333:profile/0b1d --roles-anywhere-role-arn=" + role
	for _, c := range []struct {
		name string
		args string
		env  map[string]string
		want string // "" when valid
	}{
		{"default chain without web identity", "", nil, ""},
		{"default chain with web identity", "", map[string]string{"AWS_ROLE_ARN": role, "AWS_WEB_IDENTITY_TOKEN_FILE": token}, ""},
		{"web identity", "--identity=web-identity", map[string]string{"AWS_ROLE_ARN": role, "AWS_WEB_IDENTITY_TOKEN_FILE": token}, ""},
		{"web identity without a role", "--identity=web-identity", map[string]string{"AWS_WEB_IDENTITY_TOKEN_FILE": token}, "AWS_ROLE_ARN (the operator's role) is not set"},
		{"web identity without a token file", "--identity=web-identity", map[string]string{"AWS_ROLE_ARN": role}, "AWS_WEB_IDENTITY_TOKEN_FILE (the projected ServiceAccount token) is not set"},
		{"web identity token file missing", "--identity=web-identity", map[string]string{"AWS_ROLE_ARN": role, "AWS_WEB_IDENTITY_TOKEN_FILE": filepath.Join(dir, "missing")}, "the web identity token file (AWS_WEB_IDENTITY_TOKEN_FILE) cannot be read: open " + filepath.Join(dir, "missing") + ": no such file or directory; is the projected ServiceAccount token volume mounted?"},
		{"default chain with a missing token file", "", map[string]string{"AWS_ROLE_ARN": role, "AWS_WEB_IDENTITY_TOKEN_FILE": filepath.Join(dir, "missing")}, "the web identity token file (AWS_WEB_IDENTITY_TOKEN_FILE) cannot be read"},
		{"web identity token file empty", "--identity=web-identity", map[string]string{"AWS_ROLE_ARN": role, "AWS_WEB_IDENTITY_TOKEN_FILE": empty}, "is empty"},
		{"web identity shadowed by static keys", "--identity=web-identity", map[string]string{"AWS_ROLE_ARN": role, "AWS_WEB_IDENTITY_TOKEN_FILE": token, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE"}, "the SDK would use those static keys instead"},
		{"unknown identity", "--identity=iam-user", nil, `--identity must be default, web-identity or roles-anywhere, got "iam-user"`},
		{"roles anywhere flags without roles anywhere", "--roles-anywhere-role-arn=" + role, nil, "the --roles-anywhere-* flags need --identity=roles-anywhere"},
		{"roles anywhere without a trust anchor", "--identity=roles-anywhere --roles-anywhere-role-arn=" + role, nil, "the trust anchor ARN is missing (--roles-anywhere-trust-anchor-arn)"},
		{"roles anywhere with an unreadable certificate", raFlags + " --roles-anywhere-certificate=" + filepath.Join(dir, "tls.crt"), nil, "reading the Roles Anywhere certificate: open " + filepath.Join(dir, "tls.crt")},
		{"roles anywhere with a malformed endpoint", raFlags + " --roles-anywhere-endpoint=rolesanywhere.example.com", nil, "--roles-anywhere-endpoint must be a URL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range []string{"AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ACCESS_KEY_ID"} {
				t.Setenv(k, c.env[k])
			}
			fs := flag.NewFlagSet("rolekeeper", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			_, err := parseFlags(fs, strings.Fields(c.args))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}
