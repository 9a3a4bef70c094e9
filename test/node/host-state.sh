#!/usr/bin/env bash
# Prints what a kubelet or containerd would change on this machine if it escaped its namespaces:
# the kernel settings the kubelet writes at start, and whether the paths they write by default
# exist. run.sh records it before the suite and down.sh compares it afterwards.
set -uo pipefail
for f in vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes; do
  echo "sysctl $f=$(cat "/proc/sys/$f" 2>/dev/null)"
done
for p in /var/lib/kubelet /var/lib/cni /var/lib/containerd /run/containerd /run/runc /var/run/netns /etc/cni /opt/containerd /opt/cni \
  /usr/libexec/kubernetes /var/log/pods /var/log/containers /etc/kubernetes; do
  if [ -e "$p" ]; then echo "exists $p"; else echo "absent $p"; fi
done
echo "mounts $(wc -l </proc/self/mountinfo)"
echo "links $(ip -o link show | wc -l)"
