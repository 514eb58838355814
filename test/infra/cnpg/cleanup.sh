#!/bin/sh
# Removes what one run of test/infra/cnpg/harness.ts created on the machine: every process in
# its network namespaces (cnpgh-TAG-*), the namespaces, its veths and bridge (cnhTAG*), and
# its temp dir. harness.ts runs it at stop(), from a watchdog when the test process dies
# without stopping it, and at start for leftovers of runs whose process is gone.
#
# Usage: cleanup.sh TAG [TMP_DIR]
set -u
tag=$1
tmp=${2:-}
case $tag in *[!0-9a-z]* | '') echo "cleanup.sh: bad tag" >&2; exit 2 ;; esac

for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^cnpgh-${tag}-"); do
  pids=$(ip netns pids "$ns" 2>/dev/null || true)
  # shellcheck disable=SC2086
  [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
  ip netns delete "$ns" 2>/dev/null
done
for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^cnh${tag}(v[0-9]+)?$"); do
  ip link delete "$link" 2>/dev/null
done
if [ -n "$tmp" ] && [ -d "$tmp" ]; then
  # Mounts live in the pods' private mount namespaces, gone with their processes.
  i=0
  while ! rm -rf "$tmp" 2>/dev/null && [ $i -lt 20 ]; do sleep 0.2; i=$((i + 1)); done
fi
exit 0
