#!/usr/bin/env bash
# Runs a command (the real-node suite: `make test-node`) inside a network namespace and a private
# mount namespace of its own, and removes everything it started afterwards, whether the command
# passed, failed or was interrupted:
#
#   test/node/run.sh go test -tags node ./test/node/
#
# up.sh prepares the namespaces and runs the command there; down.sh tears down. Needs root, and
# Debian's containerd, runc, CNI plugins, iptables and busybox-static (installed when missing).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" = 0 ] || { echo "test/node/run.sh: the real-node suite needs root (it runs containerd and a kubelet)" >&2; exit 1; }
"$here/../../hack/install-node-deps.sh"
state=$(mktemp -d /tmp/rolekeeper-node-XXXXXX)
"$here/host-state.sh" >"$state/host-before"
trap '"$here/down.sh" "$state"' EXIT
trap 'exit 130' INT TERM
# --fork: the command becomes the namespaces' first process; unshare waits for it.
set +e
unshare --net --mount --propagation private --fork -- "$here/up.sh" "$state" "$@"
rc=$?
trap - EXIT
[ $rc = 0 ] || export ROLEKEEPER_NODE_KEEP=1
"$here/down.sh" "$state" || { [ $rc != 0 ] || rc=1; }
exit $rc
