package webhooks

import (
	"flag"
	"io"
	"strings"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		args string
		want string // "" when valid
	}{
		{"", ""},
		{"--webhook-port=9443 --sidecar-image=rk:1", ""},
		{"--webhook-port=9443 --sidecar-image=rk:1 --webhook-cert-secret=rolekeeper-system/cert --webhook-service=rolekeeper-system/rolekeeper-webhook", ""},
		{"--webhook-port=9443", "--sidecar-image is required"},
		{"--webhook-port=70000 --sidecar-image=rk:1", "--webhook-port must be"},
		{"--webhook-port=9443 --sidecar-image=rk:1 --sidecar-image-pull-policy=Sometimes", "--sidecar-image-pull-policy must be"},
		{"--webhook-port=9443 --sidecar-image=rk:1 --webhook-cert-secret=cert", "--webhook-cert-secret must be namespace/name"},
		{"--webhook-port=9443 --sidecar-image=rk:1 --webhook-cert-secret=ns/cert", "--webhook-service must be namespace/name"},
	}
	for _, c := range cases {
		var o Options
		fs := flag.NewFlagSet("rolekeeper", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		o.BindFlags(fs)
		if err := fs.Parse(strings.Fields(c.args)); err != nil {
			t.Fatal(err)
		}
		err := o.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%q: %v, want %q", c.args, err, c.want)
		}
		if (o.Server() == nil) != (o.Port == 0) {
			t.Errorf("%q: a webhook server exactly when a port is set", c.args)
		}
	}
}
