// Package image assembles OCI container images from static binaries with go-containerregistry,
// without a Docker engine, reproducibly: the same inputs give the same bytes and the same
// digest, because every timestamp is the one given, entries are written in a fixed order with
// fixed owners, and nothing is read from the environment.
//
// Base gives what a distroless "static:nonroot" image gives a Go program: /etc/passwd and
// /etc/group with root, nobody and nonroot (65532), a home directory for nonroot, a world-writable
// /tmp and a CA bundle. make image (hack/image) puts the manager on it; the real-node tests
// build their pause and consumer images with it too.
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRoot is the user and group id of distroless's nonroot user.
const NonRoot = 65532

// CABundle is where Debian (the build machines) keeps the system CA bundle, and where Go's
// crypto/x509 looks first on Linux.
const CABundle = "/etc/ssl/certs/ca-certificates.crt"

// File is one entry of a layer: a regular file (Data), a directory (Dir) or a symbolic link
// (Link).
type File struct {
	Path     string // absolute path in the image
	Data     []byte
	Dir      bool
	Link     string
	Mode     fs.FileMode // permission bits (and sticky); 0 means 0755 for directories and links, 0644 for files
	UID, GID int
}

// Layer is a set of files and the history line that describes it.
type Layer struct {
	Files     []File
	CreatedBy string
}

// Spec is an image: its layers, bottom first, and its configuration.
type Spec struct {
	Layers     []Layer
	Entrypoint []string
	Cmd        []string
	Env        []string
	User       string
	WorkingDir string
	Labels     map[string]string
	// Created is the time written everywhere a time is: the config, the history and every
	// file. Use the commit time for reproducible builds.
	Created  time.Time
	OS, Arch string
}

// Base is the distroless-like base layer for a static binary, with the CA bundle ca (PEM).
func Base(ca []byte) Layer {
	return Layer{
		CreatedBy: "rolekeeper image base: nonroot user 65532, /tmp, CA certificates",
		Files: []File{
			{Path: "/etc", Dir: true},
			{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
			{Path: "/etc/group", Data: []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")},
			{Path: "/etc/ssl", Dir: true},
			{Path: "/etc/ssl/certs", Dir: true},
			{Path: CABundle, Data: ca},
			{Path: "/home", Dir: true},
			{Path: "/home/nonroot", Dir: true, Mode: 0o700, UID: NonRoot, GID: NonRoot},
			{Path: "/root", Dir: true, Mode: 0o700},
			{Path: "/tmp", Dir: true, Mode: 0o777 | fs.ModeSticky},
		},
	}
}

// Binary is a layer with one executable at p.
func Binary(p string, data []byte) Layer {
	return Layer{CreatedBy: "COPY " + path.Base(p) + " " + p, Files: []File{{Path: p, Data: data, Mode: 0o755}}}
}

// Build assembles the image.
func Build(s Spec) (v1.Image, error) {
	if s.OS == "" || s.Arch == "" {
		return nil, fmt.Errorf("the image needs an OS and an architecture")
	}
	created := v1.Time{Time: s.Created.UTC()}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, l := range s.Layers {
		data, err := tarLayer(l.Files, s.Created)
		if err != nil {
			return nil, err
		}
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
			tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, err
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{Created: created, CreatedBy: l.CreatedBy}}); err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = s.OS, s.Arch, created
	cf.Config = v1.Config{
		Entrypoint: s.Entrypoint, Cmd: s.Cmd, Env: s.Env, User: s.User, WorkingDir: s.WorkingDir, Labels: s.Labels,
	}
	return mutate.ConfigFile(img, cf)
}

// tarLayer writes files as an uncompressed tar, sorted by path, every entry with the time t and
// the file's own owner, so that the bytes depend on nothing else.
func tarLayer(files []File, t time.Time) ([]byte, error) {
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i, f := range sorted {
		if !strings.HasPrefix(f.Path, "/") || path.Clean(f.Path) != f.Path {
			return nil, fmt.Errorf("%q is not a clean absolute path", f.Path)
		}
		if i > 0 && sorted[i-1].Path == f.Path {
			return nil, fmt.Errorf("%s is in the layer twice", f.Path)
		}
		h := &tar.Header{
			Name: strings.TrimPrefix(f.Path, "/"), Uid: f.UID, Gid: f.GID, ModTime: t.UTC(), Format: tar.FormatPAX,
			Mode: int64(f.Mode.Perm()),
		}
		if f.Mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		switch {
		case f.Dir:
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
			if f.Mode == 0 {
				h.Mode = 0o755
			}
		case f.Link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.Link
			if f.Mode == 0 {
				h.Mode = 0o777
			}
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
			if f.Mode == 0 {
				h.Mode = 0o644
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(f.Data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteTarball writes img tagged ref as a docker-save archive (manifest.json and the blobs),
// which `docker load`, `podman load` and `ctr images import` read.
func WriteTarball(img v1.Image, ref, file string) error {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(file, tag, img)
}

// WriteLayout writes img into an OCI image layout directory (created or appended to), with the
// tag of ref as its org.opencontainers.image.ref.name and ref in full as
// io.containerd.image.name.
func WriteLayout(img v1.Image, ref, dir string) error {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return err
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return err
		}
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag.TagStr(),
		"io.containerd.image.name":          tag.String(),
	}))
}
