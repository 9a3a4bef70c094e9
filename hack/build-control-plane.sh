#!/usr/bin/env bash
# Builds the test control plane (kube-apiserver and etcd) from their Go modules into
# bin/k8s/<versions>/, which envtest uses as KUBEBUILDER_ASSETS. Nothing prebuilt is
# downloaded: only Go modules from the module proxy. A binary already present is kept.
#
#   hack/build-control-plane.sh            # build what is missing, print the assets dir
#   WITH_KUBECTL=1 hack/build-control-plane.sh   # also kubectl, for the end-to-end tests
#   WITH_NODE=1 hack/build-control-plane.sh      # also kubelet, kube-controller-manager,
#                                                # kube-scheduler and kube-proxy (test/node)
#   KUBE_VERSION=1.37.2 ETCD_VERSION=3.6.16 hack/build-control-plane.sh
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${ASSETS_DIR:-$root/bin/k8s/$KUBE_VERSION-etcd$ETCD_VERSION}
work=${WORK_DIR:-$root/bin/.build}
mkdir -p "$out" "$work"

log() { echo "[control-plane] $*" >&2; }

# The staging modules k8s.io/kubernetes replaces with its own ./staging tree; outside that
# tree each must be pinned to the matching v0.x release of its own module.
staging_replaces() {
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  [ -n "$gomod" ] || { log "cannot read go.mod of k8s.io/kubernetes@v$KUBE_VERSION"; exit 1; }
  grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk -v v="v0.${KUBE_VERSION#1.}" '{print "replace " $1 " => " $1 " " v}'
}

# The wrapper module that builds commands of k8s.io/kubernetes (the names under cmd/ given as
# arguments); go mod tidy keeps the requirements of exactly those.
k8s_module() {
  local dir=$work/kubernetes-$KUBE_VERSION cmd
  mkdir -p "$dir"
  {
    echo "module rolekeeper.local/kube-apiserver"
    echo
    echo "go 1.26"
    echo
    echo "require k8s.io/kubernetes v$KUBE_VERSION"
    echo
    staging_replaces
  } >"$dir/go.mod"
  {
    printf '//go:build tools\n\npackage tools\n\nimport (\n'
    for cmd in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd"; done
    printf ')\n'
  } >"$dir/tools.go"
  (cd "$dir" && go mod tidy >/dev/null)
  echo "$dir"
}

version_ldflags() {
  echo "-s -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=${KUBE_VERSION%%.*} -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2) -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=v$KUBE_VERSION"
}

# build_k8s builds the named commands of k8s.io/kubernetes that are missing from $out.
build_k8s() {
  local missing=() pkgs=() dir cmd
  for cmd in "$@"; do [ -x "$out/$cmd" ] || missing+=("$cmd"); done
  [ ${#missing[@]} -gt 0 ] || return 0
  log "building ${missing[*]} v$KUBE_VERSION (several minutes on a cold cache)"
  dir=$(k8s_module "${missing[@]}")
  for cmd in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$cmd"); done
  # One go build for all of them: the packages they share compile once. With several main
  # packages, -o names a directory and each binary takes its command's name.
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags="$(version_ldflags)" -o "$out/" "${pkgs[@]}")
}

build_etcd() {
  local dir=$work/etcd-$ETCD_VERSION
  mkdir -p "$dir"
  log "building etcd v$ETCD_VERSION"
  cat >"$dir/go.mod" <<MOD
module rolekeeper.local/etcd

go 1.26

require go.etcd.io/etcd/server/v3 v$ETCD_VERSION
MOD
  cat >"$dir/main.go" <<'GO'
// Command etcd is etcd's own server entry point, built from its Go module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$dir" && go mod tidy >/dev/null && CGO_ENABLED=0 go build -trimpath -ldflags=-s -o "$out/etcd" .)
}

[ -x "$out/etcd" ] || build_etcd
build_k8s kube-apiserver
if [ "${WITH_KUBECTL:-0}" = 1 ]; then
  build_k8s kubectl
fi
if [ "${WITH_NODE:-0}" = 1 ]; then
  build_k8s kubelet kube-controller-manager kube-scheduler kube-proxy
fi
"$out/etcd" --version >/dev/null
"$out/kube-apiserver" --version >&2
echo "$out"
