// Package testenv starts the test control plane (kube-apiserver and etcd built by
// hack/build-control-plane.sh) through controller-runtime's envtest, with rolekeeper's CRDs
// installed.
package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Root is the repository root, found from this file's location.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir returns the directory holding kube-apiserver and etcd: KUBEBUILDER_ASSETS when set,
// otherwise the newest build under bin/k8s.
func AssetsDir() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	dirs, _ := filepath.Glob(filepath.Join(Root(), "bin", "k8s", "*"))
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "kube-apiserver")); err == nil {
			return dirs[i], nil
		}
	}
	return "", fmt.Errorf("no test control plane: run `make control-plane` (hack/build-control-plane.sh) or set KUBEBUILDER_ASSETS")
}

// New returns an envtest environment with the CRDs from config/crd/bases, not yet started.
func New() (*envtest.Environment, error) {
	dir, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	return &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     []string{filepath.Join(Root(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}, nil
}

// NewIssuer is New with the API server's service-account issuer fit to be read by a test as IAM
// reads a cluster's: the discovery document points at a JWKS on loopback (otherwise at the
// machine's first address) and the test fetches both as described in docs/operations.md.
func NewIssuer() (*envtest.Environment, error) {
	env, err := New()
	if err != nil {
		return nil, err
	}
	env.ControlPlane.GetAPIServer().Configure().Set("external-hostname", "127.0.0.1")
	return env, nil
}

// GVR helpers for tests that use the dynamic client.
var (
	AssumedRoles        = schema.GroupVersionResource{Group: "rolekeeper.io", Version: "v1alpha1", Resource: "assumedroles"}
	AssumedRolePolicies = schema.GroupVersionResource{Group: "rolekeeper.io", Version: "v1alpha1", Resource: "assumedrolepolicies"}
)
