package secretdata_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/rolekeeper/rolekeeper/pkg/secretdata"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var sample = secretdata.Input{
	AccessKeyID:     "ASIAEXAMPLEKEY000001",
	SecretAccessKey: "exampleSecretKey/0000000000000000000000+",
	SessionToken:    "IQoJb3JpZ2luX2VjEXAMPLETOKEN==",
	Expiration:      time.Date(2026, 11, 22, 13, 0, 0, 0, time.FixedZone("CET", 3600)),
}

// Golden files hold every key of the rendered Secret, one file per case, keys in order.
func TestRenderGolden(t *testing.T) {
	cases := map[string]func(*secretdata.Input){
		"env-and-ini-default-profile": func(*secretdata.Input) {},
		"with-region":                 func(in *secretdata.Input) { in.Region = "eu-west-1" },
		"named-profile":               func(in *secretdata.Input) { in.Profile = "reader"; in.Region = "us-east-1" },
		"credential-process-default": func(in *secretdata.Input) {
			in.CredentialProcessMountPath = "/var/run/secrets/rolekeeper.io/creds/"
		},
		"credential-process-profile": func(in *secretdata.Input) {
			in.Profile = "deployer"
			in.Region = "ap-southeast-2"
			in.CredentialProcessMountPath = "/creds"
		},
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			in := sample
			mod(&in)
			data := secretdata.Render(in)
			got := dump(data)
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rendered\n%s\nwant\n%s", got, want)
			}
			keys := secretdata.Keys(in)
			sort.Strings(keys)
			var rendered []string
			for k := range data {
				rendered = append(rendered, k)
			}
			sort.Strings(rendered)
			if !reflect.DeepEqual(keys, rendered) {
				t.Errorf("Keys() = %v, Render produced %v", keys, rendered)
			}
		})
	}
}

func dump(data map[string][]byte) []byte {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString("==> " + k + "\n")
		b.Write(data[k])
		if !bytes.HasSuffix(data[k], []byte("\n")) {
			b.WriteString("\n")
		}
	}
	return b.Bytes()
}

func TestCredentialsRoundTrip(t *testing.T) {
	data := secretdata.Render(sample)
	in, ok := secretdata.Credentials(data)
	if !ok || in.AccessKeyID != sample.AccessKeyID || in.SecretAccessKey != sample.SecretAccessKey || in.SessionToken != sample.SessionToken || !in.Expiration.Equal(sample.Expiration) {
		t.Fatalf("read back %v %v", in, ok)
	}
	for _, key := range []string{secretdata.KeyAccessKeyID, secretdata.KeySecretAccessKey, secretdata.KeySessionToken, secretdata.KeyCredentialExpiration} {
		broken := secretdata.Render(sample)
		delete(broken, key)
		if _, ok := secretdata.Credentials(broken); ok {
			t.Errorf("without %s the credentials still read as complete", key)
		}
	}
	broken := secretdata.Render(sample)
	broken[secretdata.KeyCredentialExpiration] = []byte("tomorrow")
	if _, ok := secretdata.Credentials(broken); ok {
		t.Error("an unparseable expiration reads as complete")
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	in := sample
	in.CredentialProcessMountPath = "/creds"
	if !reflect.DeepEqual(secretdata.Render(in), secretdata.Render(in)) {
		t.Fatal("two renders differ")
	}
	if !strings.Contains(string(secretdata.Render(in)[secretdata.KeyCredentialExpiration]), "2026-11-22T12:00:00Z") {
		t.Error("expiration is not written in UTC RFC 3339")
	}
}

func BenchmarkRender(b *testing.B) {
	in := sample
	in.Region = "us-east-1"
	in.CredentialProcessMountPath = "/creds"
	b.ReportAllocs()
	for b.Loop() {
		_ = secretdata.Render(in)
	}
}
