package main

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

const tag = "ghcr.io/rolekeeper/rolekeeper:v1.2.3"

func build(t *testing.T, dir, created string) (digest string, archive []byte) {
	t.Helper()
	bin, ca := filepath.Join(dir, "rolekeeper"), filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(bin, []byte("\x7fELF a static binary"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "image.tar")
	d, err := run(bin, tag, out, filepath.Join(dir, "oci"), ca, "v1.2.3", "0123abcd", "https://github.com/rolekeeper/rolekeeper", created, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return d, b
}

// Two builds from the same inputs in different directories, at different times, give the same
// bytes and digest; another -created gives another digest.
func TestReproducible(t *testing.T) {
	d1, a1 := build(t, t.TempDir(), "1764000000")
	d2, a2 := build(t, t.TempDir(), "1764000000")
	if d1 != d2 || !bytes.Equal(a1, a2) {
		t.Fatalf("two builds differ: %s and %s (archives equal: %v)", d1, d2, bytes.Equal(a1, a2))
	}
	if d3, _ := build(t, t.TempDir(), "1764000001"); d3 == d1 {
		t.Fatalf("another creation time gave the same digest %s", d3)
	}
}

// The image has what the Dockerfile's distroless base gives: user 65532, /tmp, the CA bundle, a
// home; the binary as the entrypoint; OCI labels; every timestamp the commit's. The OCI layout
// holds the same image.
func TestContents(t *testing.T) {
	dir := t.TempDir()
	digest, _ := build(t, dir, "1764000000")
	ref, _ := name.NewTag(tag)
	img, err := tarball.ImageFromPath(filepath.Join(dir, "image.tar"), &ref)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if c.User != "65532:65532" || strings.Join(c.Entrypoint, " ") != "/rolekeeper" || c.WorkingDir != "/home/nonroot" {
		t.Errorf("config %+v", c)
	}
	for k, v := range map[string]string{
		"org.opencontainers.image.version": "v1.2.3", "org.opencontainers.image.revision": "0123abcd",
		"org.opencontainers.image.source": "https://github.com/rolekeeper/rolekeeper", "org.opencontainers.image.created": "2025-11-24T16:00:00Z",
	} {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || cf.Created.Unix() != 1764000000 {
		t.Errorf("os %s arch %s created %v", cf.OS, cf.Architecture, cf.Created)
	}

	type entry struct {
		mode     int64
		uid      int
		typ      byte
		contents string
	}
	files := map[string]entry{}
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		if h.ModTime.Unix() != 1764000000 {
			t.Errorf("%s has time %v", h.Name, h.ModTime)
		}
		files["/"+strings.TrimSuffix(h.Name, "/")] = entry{h.Mode, h.Uid, h.Typeflag, string(b)}
	}
	want := map[string]entry{
		"/rolekeeper":                        {0o755, 0, tar.TypeReg, "\x7fELF a static binary"},
		"/tmp":                               {0o1777, 0, tar.TypeDir, ""},
		"/home/nonroot":                      {0o700, 65532, tar.TypeDir, ""},
		"/etc/ssl/certs/ca-certificates.crt": {0o644, 0, tar.TypeReg, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
	}
	for p, w := range want {
		if got, ok := files[p]; !ok || got != w {
			t.Errorf("%s: %+v, want %+v", p, got, w)
		}
	}
	if !strings.Contains(files["/etc/passwd"].contents, "nonroot:x:65532:65532:") {
		t.Errorf("/etc/passwd: %q", files["/etc/passwd"].contents)
	}

	p, err := layout.FromPath(filepath.Join(dir, "oci"))
	if err != nil {
		t.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 1 || m.Manifests[0].Digest.String() != digest || m.Manifests[0].Annotations["io.containerd.image.name"] != tag {
		t.Errorf("OCI layout index %+v, want %s as %s", m.Manifests, digest, tag)
	}
}
