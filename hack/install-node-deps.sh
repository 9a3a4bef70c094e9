#!/usr/bin/env bash
# Installs the Debian packages the real-node suite (test/node) runs: containerd 1.6 and runc,
# the CNI plugins (bridge, host-local, loopback in /usr/lib/cni), iproute2 for the suite's
# network namespace, iptables for kube-proxy,
# busybox-static for the consumer image's shell and cat, and the CA bundle the image carries.
# Does nothing when they are all there; with --list, only prints the missing packages.
set -euo pipefail
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || [ -x /usr/sbin/runc ] || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || need+=(iproute2)
command -v iptables >/dev/null || [ -x /usr/sbin/iptables ] || need+=(iptables)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
[ -f /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
if [ "${1:-}" = --list ]; then
  echo "${need[@]}"
  exit 0
fi
[ ${#need[@]} -gt 0 ] || exit 0
echo "== installing ${need[*]} (Debian)" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
