#!/usr/bin/env bash
# down.sh STATE: removes everything a run of run.sh started, whatever state it ended in: every
# process in its network or mount namespace or in its cgroups (by PID), the cgroups, and STATE.
# The namespaces, and every mount made in them, end with their last process. It then checks that
# the machine looks as it did before (host-state.sh) and fails loudly if not.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state=$1
[ -d "$state" ] || exit 0
netns=$(cat "$state/netns" 2>/dev/null)
mntns=$(cat "$state/mntns" 2>/dev/null)
cgroup=$(cat "$state/cgroup" 2>/dev/null)

# ours prints the PIDs that belong to this run.
ours() {
  local p pid
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = $$ ] && continue
    if { [ -n "$netns" ] && [ "$(readlink "$p/ns/net" 2>/dev/null)" = "$netns" ]; } ||
      { [ -n "$mntns" ] && [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$mntns" ]; }; then
      echo "$pid"
    fi
  done
  if [ -n "$cgroup" ]; then
    find /sys/fs/cgroup/*/"$cgroup" -name cgroup.procs -exec cat {} + 2>/dev/null
  fi
}

for sig in TERM KILL; do
  pids=$(ours | sort -u)
  [ -n "$pids" ] || break
  # shellcheck disable=SC2086
  kill -s $sig $pids 2>/dev/null
  for _ in $(seq 50); do
    [ -z "$(ours)" ] && break
    sleep 0.1
  done
done
left=$(ours | sort -u | tr '\n' ' ')

failed=0
if [ -n "$left" ]; then
  echo "down.sh: processes still running: $left" >&2
  failed=1
fi
if [ -n "$cgroup" ]; then
  for h in /sys/fs/cgroup/*/"$cgroup"; do
    [ -d "$h" ] || continue
    find "$h" -depth -type d -exec rmdir {} + 2>/dev/null
    if [ -d "$h" ]; then
      echo "down.sh: could not remove cgroup $h" >&2
      failed=1
    fi
  done
fi
if [ -f "$state/host-before" ]; then
  if ! diff <(cat "$state/host-before") <("$here/host-state.sh") >&2; then
    echo "down.sh: the machine changed (above: before and after the suite)" >&2
    failed=1
  fi
fi
if [ "${ROLEKEEPER_NODE_KEEP:-}" = 1 ] || [ $failed = 1 ]; then
  # Keep the logs and configuration, not the images and the overlays.
  find "$state" -maxdepth 5 -type d \( -name containerd -o -name kubelet -o -name overlay -o -name image \) -prune -exec rm -rf {} + 2>/dev/null
  echo "down.sh: logs kept in $state" >&2
else
  rm -rf "$state"
fi
exit $failed
