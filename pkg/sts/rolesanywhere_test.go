//go:build cgo

package sts_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rolekeeper/rolekeeper/pkg/sts"
	"github.com/rolekeeper/rolekeeper/pkg/sts/ststest"
)

const (
	raAnchor  = "arn:aws:rolesanywhere:us-east-1:111122223333:trust-anchor/0b1c2d3e-aaaa-bbbb-cccc-000000000001"
	raProfile = "arn:aws:rolesanywhere:us-east-1:111122223333:profile/0b1c2d3e-aaaa-bbbb-cccc-000000000002"
	raRole    = "arn:aws:iam::111122223333:role/rolekeeper"
)

// rolesAnywhereFixture is an emulator with a trust anchor and profile, a CA, and a Secret
// volume holding a certificate it issued.
type rolesAnywhereFixture struct {
	srv *ststest.Server
	ca  *ststest.CA
	dir string
	ra  sts.RolesAnywhere
}

func newRolesAnywhereFixture(t *testing.T, opts ststest.Options) *rolesAnywhereFixture {
	t.Helper()
	ca, err := ststest.NewCA("rolekeeper test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv := ststest.New(opts).Start()
	t.Cleanup(srv.Close)
	if err := srv.AddTrustAnchor(ststest.TrustAnchor{Arn: raAnchor, CAPEM: ca.PEM}); err != nil {
		t.Fatal(err)
	}
	srv.AddRolesAnywhereProfile(ststest.RolesAnywhereProfile{Arn: raProfile, RoleArns: []string{raRole}})
	dir := filepath.Join(t.TempDir(), "roles-anywhere")
	f := &rolesAnywhereFixture{srv: srv, ca: ca, dir: dir, ra: sts.RolesAnywhere{
		TrustAnchorArn: raAnchor, ProfileArn: raProfile, RoleArn: raRole,
		CertificateFile: filepath.Join(dir, "tls.crt"), PrivateKeyFile: filepath.Join(dir, "tls.key"), Endpoint: srv.URL,
	}}
	f.rotate(t, "rolekeeper", time.Now().Add(time.Hour), false)
	return f
}

// rotate writes a new certificate and key into the volume, as cert-manager renews a Secret.
func (f *rolesAnywhereFixture) rotate(t *testing.T, cn string, notAfter time.Time, rsaKey bool) *ststest.Leaf {
	t.Helper()
	leaf, err := f.ca.Issue(cn, notAfter, rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := ststest.WriteVolume(f.dir, map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM, "ca.crt": f.ca.PEM}); err != nil {
		t.Fatal(err)
	}
	return leaf
}

func (f *rolesAnywhereFixture) sessions() []ststest.Call {
	var out []ststest.Call
	for _, c := range f.srv.Calls() {
		if c.Action == "CreateSession" {
			out = append(out, c)
		}
	}
	return out
}

func TestRolesAnywhereIdentity(t *testing.T) {
	for _, rsaKey := range []bool{false, true} {
		name := map[bool]string{false: "ECDSA", true: "RSA"}[rsaKey]
		t.Run(name, func(t *testing.T) {
			// A time scale that makes the operator's one-hour session shorter than the expiry
			// window: every call refreshes, so the test sees the renewed certificate at once.
			f := newRolesAnywhereFixture(t, ststest.Options{TimeScale: 120})
			first := f.rotate(t, "rolekeeper", time.Now().Add(time.Hour), rsaKey)
			var seen []sts.Identity
			client, err := sts.LoadRolesAnywhere(context.Background(), sts.Options{Region: "us-east-1", Endpoint: f.srv.URL,
				OnIdentity: func(id sts.Identity) { seen = append(seen, id) }}, f.ra)
			if err != nil {
				t.Fatal(err)
			}
			id, err := client.OwnIdentity(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if want := "arn:aws:sts::111122223333:assumed-role/rolekeeper/" + first.Serial; id.Arn != want || id.Source != "roles-anywhere" || !id.RoleSession() {
				t.Fatalf("identity %+v, want %s from roles-anywhere", id, want)
			}
			// Its sessions are role sessions: AWS caps what they assume at one hour.
			_, err = client.AssumeRole(context.Background(), sts.AssumeRoleRequest{RoleArn: "arn:aws:iam::111122223333:role/reader", SessionName: "s1", DurationSeconds: 7200}, nil)
			if sts.Code(err) != "ValidationError" || !strings.Contains(err.Error(), "role chaining") {
				t.Fatalf("a 2-hour AssumeRole: %v, want the role chaining refusal", err)
			}

			// cert-manager renews the certificate. The next refresh signs with the new one,
			// without a new client (a refresh already under way may still use the old one).
			second := f.rotate(t, "rolekeeper", time.Now().Add(2*time.Hour), rsaKey)
			deadline := time.Now().Add(10 * time.Second)
			for !strings.HasSuffix(id.Arn, "/"+second.Serial) {
				if time.Now().After(deadline) {
					t.Fatalf("identity after the renewal %s, want the session of certificate %s", id.Arn, second.Serial)
				}
				if id, err = client.OwnIdentity(context.Background()); err != nil {
					t.Fatalf("after the renewal: %v", err)
				}
			}
			// Once the old certificate is revoked, refreshes go on with the new one.
			f.srv.RevokeCertificate(first.Serial, true)
			for range 3 {
				if id, err = client.OwnIdentity(context.Background()); err != nil || !strings.HasSuffix(id.Arn, "/"+second.Serial) {
					t.Fatalf("with the old certificate revoked: %v, %v", id, err)
				}
			}
			sessions := f.sessions()
			last := sessions[len(sessions)-1]
			if last.CertificateSerial != second.Serial || last.Code != "" {
				t.Fatalf("last CreateSession %+v, want success with certificate %s", last, second.Serial)
			}
			for _, c := range sessions {
				if c.Code != "" {
					t.Errorf("a CreateSession failed: %+v", c)
				}
			}
			if len(seen) < 2 || seen[0].Arn == seen[len(seen)-1].Arn {
				t.Fatalf("OnIdentity saw %+v, want the identity of each certificate", seen)
			}
		})
	}
}

func TestRolesAnywhereRefusals(t *testing.T) {
	other, err := ststest.NewCA("someone else's CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		prepare func(t *testing.T, f *rolesAnywhereFixture)
		code    string
		message string
	}{
		// The emulator's clock is past the certificate's expiry (the client checked it was
		// valid when it started).
		{"expired certificate", func(t *testing.T, f *rolesAnywhereFixture) {}, "AccessDeniedException", "Untrusted signing certificate: it is not valid"},
		{"untrusted certificate", func(t *testing.T, f *rolesAnywhereFixture) {
			leaf, err := other.Issue("rolekeeper", time.Now().Add(time.Hour), false)
			if err != nil {
				t.Fatal(err)
			}
			if err := ststest.WriteVolume(f.dir, map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM}); err != nil {
				t.Fatal(err)
			}
		}, "AccessDeniedException", "Untrusted signing certificate"},
		{"revoked certificate", func(t *testing.T, f *rolesAnywhereFixture) {
			leaf := f.rotate(t, "rolekeeper", time.Now().Add(time.Hour), false)
			f.srv.RevokeCertificate(leaf.Serial, true)
		}, "AccessDeniedException", "Certificate revoked"},
		{"role the profile does not allow", func(t *testing.T, f *rolesAnywhereFixture) {
			f.ra.RoleArn = "arn:aws:iam::111122223333:role/admin"
		}, "AccessDeniedException", "Unable to assume role for arn:aws:iam::111122223333:role/admin"},
		{"subject the role does not trust", func(t *testing.T, f *rolesAnywhereFixture) {
			f.srv.SetRole(raRole, ststest.RoleRule{RolesAnywhereSubjects: []string{"rolekeeper-prod"}})
		}, "AccessDeniedException", "Unable to assume role"},
		{"session longer than the profile allows", func(t *testing.T, f *rolesAnywhereFixture) {
			f.ra.SessionDuration = 2 * time.Hour
		}, "ValidationException", "exceeds the profile's maximum session duration"},
		{"request changed after signing", func(t *testing.T, f *rolesAnywhereFixture) {
			// A proxy changes the role in the signed query string.
			proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				q := r.URL.Query()
				q.Set("roleArn", "arn:aws:iam::111122223333:role/other")
				r.URL.RawQuery = q.Encode()
				f.srv.ServeHTTP(w, r)
			}))
			t.Cleanup(proxy.Close)
			f.ra.Endpoint = proxy.URL
		}, "AccessDeniedException", "Invalid signature"},
	} {
		t.Run(c.name, func(t *testing.T) {
			clock := &offsetClock{}
			f := newRolesAnywhereFixture(t, ststest.Options{Clock: clock})
			c.prepare(t, f)
			if c.name == "expired certificate" {
				clock.offset = 2 * time.Hour
			}
			client, err := sts.LoadRolesAnywhere(context.Background(), sts.Options{Region: "us-east-1", Endpoint: f.srv.URL, MaxAttempts: 1}, f.ra)
			if err != nil {
				t.Fatal(err)
			}
			_, err = client.OwnIdentity(context.Background())
			if err == nil || !strings.Contains(err.Error(), c.code) || !strings.Contains(err.Error(), c.message) {
				t.Fatalf("got %v, want %s: %s", err, c.code, c.message)
			}
			sessions := f.sessions()
			if len(sessions) == 0 || sessions[len(sessions)-1].IssuedAccessKey != "" {
				t.Fatalf("CreateSession calls %+v, want a refused one", sessions)
			}
		})
	}
}

// offsetClock is the real clock moved forward by offset.
type offsetClock struct{ offset time.Duration }

func (c *offsetClock) Now() time.Time                  { return time.Now().Add(c.offset) }
func (c *offsetClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

func TestRolesAnywhereRefusesToStart(t *testing.T) {
	f := newRolesAnywhereFixture(t, ststest.Options{})
	mismatched, err := f.ca.Issue("rolekeeper", time.Now().Add(time.Hour), false)
	if err != nil {
		t.Fatal(err)
	}
	keyOnly := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(keyOnly, mismatched.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	expired := filepath.Join(t.TempDir(), "expired")
	leaf, err := f.ca.Issue("rolekeeper", time.Now().Add(-time.Second), false)
	if err != nil {
		t.Fatal(err)
	}
	if err := ststest.WriteVolume(expired, map[string][]byte{"tls.crt": leaf.CertPEM, "tls.key": leaf.KeyPEM}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		change func(*sts.RolesAnywhere)
		want   string
	}{
		{"no trust anchor", func(r *sts.RolesAnywhere) { r.TrustAnchorArn = "" }, "the trust anchor ARN is missing (--roles-anywhere-trust-anchor-arn)"},
		{"no profile", func(r *sts.RolesAnywhere) { r.ProfileArn = "" }, "the profile ARN is missing (--roles-anywhere-profile-arn)"},
		{"no role", func(r *sts.RolesAnywhere) { r.RoleArn = "" }, "the role ARN is missing (--roles-anywhere-role-arn)"},
		{"malformed trust anchor", func(r *sts.RolesAnywhere) { r.TrustAnchorArn = "trust-anchor/1" }, "is not of the form arn:aws:rolesanywhere:<region>:<account>:trust-anchor/<id>"},
		{"regions differ", func(r *sts.RolesAnywhere) { r.ProfileArn = strings.Replace(raProfile, "us-east-1", "eu-west-1", 1) }, "are in different regions"},
		{"unreadable certificate", func(r *sts.RolesAnywhere) { r.CertificateFile = "/nonexistent/tls.crt" }, "reading the Roles Anywhere certificate: open /nonexistent/tls.crt"},
		{"key of another certificate", func(r *sts.RolesAnywhere) { r.PrivateKeyFile = keyOnly }, "does not belong to the certificate"},
		{"expired certificate", func(r *sts.RolesAnywhere) {
			r.CertificateFile, r.PrivateKeyFile = filepath.Join(expired, "tls.crt"), filepath.Join(expired, "tls.key")
		}, "not now"},
		{"session too long", func(r *sts.RolesAnywhere) { r.SessionDuration = 13 * time.Hour }, "must be 15m to 12h"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ra := f.ra
			c.change(&ra)
			_, err := sts.LoadRolesAnywhere(context.Background(), sts.Options{Region: "us-east-1"}, ra)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}
