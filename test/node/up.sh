#!/usr/bin/env bash
# up.sh STATE CMD...: run by run.sh as the first process of a new network namespace and a private
# mount namespace. It prepares them and runs CMD there with the node's settings in the environment:
#   - loopback and a bridge rkbr0 holding the node address 10.77.0.1/24, the pods' gateway; no
#     other interface and no route out, so no packet of the suite leaves the namespace;
#   - a route for Service cluster IPs to the bridge, where kube-proxy's rules translate them;
#   - private, writable copies (overlays) of /var/lib, /var/log, /run and /usr/libexec, where the
#     kubelet, kube-controller-manager, the CNI plugins and iptables write by default;
#   - a private /etc/hosts (STATE/hosts) naming the node, to which tests add names;
#   - the kernel settings the kubelet sets at start covered by files holding their current values;
#   - the kubelet's cgroup root, created in every cgroup hierarchy (down.sh removes it).
set -euo pipefail
state=$1
shift
readlink /proc/self/ns/net >"$state/netns"
readlink /proc/self/ns/mnt >"$state/mntns"

ip link set lo up
ip link add rkbr0 type bridge
ip addr add 10.77.0.1/24 dev rkbr0
ip link set rkbr0 up
# Service cluster IPs (test/cluster.ServiceCIDR) go to the bridge, where kube-proxy's rules
# translate them; there is no default route.
ip route add 10.0.0.0/24 dev rkbr0

for d in /var/lib /var/log /run /usr/libexec; do
  o=$state/overlay/${d//\//_}
  mkdir -p "$o/upper" "$o/work"
  mount -t overlay overlay -o "lowerdir=$d,upperdir=$o/upper,workdir=$o/work" "$d"
done

# A private /etc/hosts: the node's name, and names a test maps to the node (STATE/hosts).
{ cat /etc/hosts; echo "10.77.0.1 rk-node"; } >"$state/hosts"
mount --bind "$state/hosts" /etc/hosts

mkdir -p "$state/sysctl"
for f in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
  copy=$state/sysctl/${f//\//_}
  cat "/proc/sys/$f" >"$copy"
  mount --bind "$copy" "/proc/sys/$f"
done

cgroup=rolekeeper-node-${state##*-}
echo "$cgroup" >"$state/cgroup"
for h in /sys/fs/cgroup/*/; do
  [ -d "$h" ] && [ ! -L "${h%/}" ] || continue
  mkdir -p "$h$cgroup"
done

export ROLEKEEPER_NODE_STATE=$state ROLEKEEPER_NODE_IP=10.77.0.1 ROLEKEEPER_NODE_CIDR=10.77.0.0/24 \
  ROLEKEEPER_NODE_BRIDGE=rkbr0 ROLEKEEPER_NODE_CGROUP=/$cgroup
"$@"
