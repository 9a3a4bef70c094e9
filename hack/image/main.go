// Command image assembles the rolekeeper container image from the static manager binary,
// without Docker: the distroless-like base of internal/image (nonroot user 65532, /tmp, the
// build machine's CA bundle) and the binary as /rolekeeper, with OCI labels. It writes a
// docker-save archive and, with -oci-layout, an OCI image layout, and prints the digest. The same
// inputs and -created give the same digest. `make image` runs it.
//
//	go run ./hack/image -binary bin/image/rolekeeper -tag ghcr.io/rolekeeper/rolekeeper:v0.1.0 \
//	    -o bin/image/rolekeeper.tar -version v0.1.0 -revision $(git rev-parse HEAD) -created $(git log -1 --format=%ct)
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"github.com/rolekeeper/rolekeeper/internal/image"
)

func main() {
	binary := flag.String("binary", "", "the static manager binary (CGO_ENABLED=0, GOOS=linux)")
	tag := flag.String("tag", "", "the image reference to tag, for example ghcr.io/rolekeeper/rolekeeper:v0.1.0")
	out := flag.String("o", "", "write a docker-save archive here (docker load, podman load, ctr images import)")
	ociLayout := flag.String("oci-layout", "", "also write an OCI image layout directory here")
	ca := flag.String("ca-bundle", image.CABundle, "CA certificates (PEM) to install at "+image.CABundle)
	version := flag.String("version", "", "org.opencontainers.image.version")
	revision := flag.String("revision", "", "org.opencontainers.image.revision (the commit)")
	source := flag.String("source", "https://github.com/rolekeeper/rolekeeper", "org.opencontainers.image.source")
	created := flag.String("created", "", "creation time as Unix seconds (for example the commit time); every timestamp in the image is this")
	arch := flag.String("arch", runtime.GOARCH, "architecture of -binary")
	flag.Parse()
	digest, err := run(*binary, *tag, *out, *ociLayout, *ca, *version, *revision, *source, *created, *arch)
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
	fmt.Printf("%s %s\n", *tag, digest)
}

func run(binary, tag, out, ociLayout, caFile, version, revision, source, created, arch string) (string, error) {
	if binary == "" || tag == "" || out == "" || created == "" {
		return "", errors.New("-binary, -tag, -o and -created are required")
	}
	secs, err := strconv.ParseInt(created, 10, 64)
	if err != nil {
		return "", fmt.Errorf("-created %q is not Unix seconds", created)
	}
	when := time.Unix(secs, 0).UTC()
	bin, err := os.ReadFile(binary)
	if err != nil {
		return "", err
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return "", fmt.Errorf("the CA bundle (install Debian's ca-certificates or pass -ca-bundle): %w", err)
	}
	labels := map[string]string{
		"org.opencontainers.image.title":       "rolekeeper",
		"org.opencontainers.image.description": "Keeps AWS temporary credentials fresh in Kubernetes Secrets",
		"org.opencontainers.image.source":      source,
		"org.opencontainers.image.created":     when.Format(time.RFC3339),
	}
	if version != "" {
		labels["org.opencontainers.image.version"] = version
	}
	if revision != "" {
		labels["org.opencontainers.image.revision"] = revision
	}
	img, err := image.Build(image.Spec{
		Layers:     []image.Layer{image.Base(ca), image.Binary("/rolekeeper", bin)},
		Entrypoint: []string{"/rolekeeper"},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=" + image.CABundle},
		User:       fmt.Sprintf("%d:%d", image.NonRoot, image.NonRoot),
		WorkingDir: "/home/nonroot",
		Labels:     labels,
		Created:    when,
		OS:         "linux",
		Arch:       arch,
	})
	if err != nil {
		return "", err
	}
	if err := image.WriteTarball(img, tag, out); err != nil {
		return "", err
	}
	if ociLayout != "" {
		if err := os.RemoveAll(ociLayout); err != nil {
			return "", err
		}
		if err := image.WriteLayout(img, tag, ociLayout); err != nil {
			return "", err
		}
	}
	d, err := img.Digest()
	return d.String(), err
}
