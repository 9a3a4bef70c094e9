package main

import (
	"crypto/tls"
	"flag"
	"io"
	"strings"
	"testing"
)

// --metrics-secure turns on HTTPS with the authentication and authorization filter and HTTP/1.1
// only; without it metrics stay plain HTTP, as before.
func TestMetricsSecureOptions(t *testing.T) {
	parse := func(args string) (*flags, error) {
		fs := flag.NewFlagSet("rolekeeper", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		return parseFlags(fs, strings.Fields(args))
	}
	f, err := parse("")
	if err != nil {
		t.Fatal(err)
	}
	if o := f.metricsOptions(); o.SecureServing || o.FilterProvider != nil || o.BindAddress != ":8080" {
		t.Errorf("default metrics options %+v, want plain HTTP on :8080 without a filter", o)
	}
	f, err = parse("--metrics-secure --metrics-cert-dir=/certs --metrics-bind-address=:8443")
	if err != nil {
		t.Fatal(err)
	}
	o := f.metricsOptions()
	if !o.SecureServing || o.FilterProvider == nil || o.CertDir != "/certs" || o.BindAddress != ":8443" || len(o.TLSOpts) != 1 {
		t.Fatalf("secure metrics options %+v", o)
	}
	var c tls.Config
	o.TLSOpts[0](&c)
	if strings.Join(c.NextProtos, ",") != "http/1.1" {
		t.Errorf("NextProtos %v, want http/1.1 only", c.NextProtos)
	}
	if _, err := parse("--metrics-cert-dir=/certs"); err == nil || !strings.Contains(err.Error(), "--metrics-cert-dir needs --metrics-secure") {
		t.Errorf("--metrics-cert-dir alone: %v", err)
	}
}
