//go:build node

package node

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// `make image` again, into another directory, gives the same digest and the same archive bytes as
// the build the suite runs (same commit); the labels name that commit.
func TestImageReproducible(t *testing.T) {
	dir := t.TempDir()
	again, err := makeImage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again != operatorImage+" "+operatorDigest {
		t.Errorf("the second build is %q, the first %s %s", again, operatorImage, operatorDigest)
	}
	first, err := os.ReadFile(filepath.Join(work, "image", "rolekeeper.tar"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := os.ReadFile(filepath.Join(dir, "rolekeeper.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first, second) {
		t.Errorf("the two archives differ (%d and %d bytes)", len(first), len(second))
	}
	img, err := tarball.ImageFromPath(filepath.Join(dir, "rolekeeper.tar"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	head, err := exec.Command("git", "-C", root, "rev-parse", "HEAD").Output()
	if err != nil {
		t.Fatal(err)
	}
	labels := cf.Config.Labels
	if labels["org.opencontainers.image.revision"] != strings.TrimSpace(string(head)) || labels["org.opencontainers.image.version"] != operatorTag ||
		labels["org.opencontainers.image.source"] != "https://github.com/rolekeeper/rolekeeper" || cf.Config.User != "65532:65532" {
		t.Errorf("config %+v", cf.Config)
	}
	t.Logf("%s %s, %d bytes, built twice", operatorImage, operatorDigest, len(first))
}
