#!/bin/sh
# The pod sandbox of test/infra/cnpg/harness.ts (what a container runtime's pause container
# is to a kubelet). It runs as root, as PID 1 of fresh PID, mount, UTS and IPC namespaces,
# inside the pod's network namespace (the harness starts it with nsenter + unshare). It builds
# the pod's root filesystem on a tmpfs — the machine's /usr and /etc read-only, /dev, /proc,
# /sys, a private /tmp and /dev/shm, and the pod's volume mounts — then, inside that root,
# prints "ready" and becomes `sleep infinity`. Containers join it with nsenter; killing it (or the
# unshare above it, which passes SIGKILL down) ends every process of the pod at once.
#
# Usage: sandbox.sh ROOT_DIR MOUNTS_FILE HOSTNAME
#   MOUNTS_FILE: one mount per line, "SOURCE<TAB>TARGET<TAB>ro|rw", parents before children;
#   a SOURCE that is a file is mounted on a file.
set -eu
root=$1
mounts=$2
name=$3

hostname "$name"
mount -t tmpfs -o mode=0755,size=64m cnpg-pod-root "$root"

# Merged-/usr machines have /bin, /lib… as symlinks into /usr: copy the links, bind real dirs.
for top in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$top" ]; then
    ln -s "$(readlink "/$top")" "$root/$top"
  elif [ -d "/$top" ]; then
    mkdir "$root/$top"
    mount --rbind "/$top" "$root/$top"
    mount -o remount,bind,ro "$root/$top"
  fi
done
for top in usr etc; do
  mkdir "$root/$top"
  mount --rbind "/$top" "$root/$top"
  mount -o remount,bind,ro "$root/$top"
done

mkdir -p "$root/dev" "$root/proc" "$root/sys" "$root/tmp" "$root/run" "$root/var/lib"
mount --rbind /dev "$root/dev"
# Our own /dev/shm (PostgreSQL's dynamic shared memory) over the machine's, in this namespace only.
mount -t tmpfs -o mode=1777,size=256m shm "$root/dev/shm"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount -o remount,bind,ro "$root/sys" 2>/dev/null || true
mount -t tmpfs -o mode=1777,size=256m tmp "$root/tmp"
ln -s /run "$root/var/run"

tab=$(printf '\t')
while IFS="$tab" read -r src dst mode; do
  [ -n "$src" ] || continue
  if [ -d "$src" ]; then
    mkdir -p "$root$dst"
  else
    mkdir -p "$(dirname "$root$dst")"
    [ -e "$root$dst" ] || : >"$root$dst"
  fi
  mount --bind "$src" "$root$dst"
  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$root$dst"; fi
done <"$mounts"

# "ready" only once inside the new root: the harness then enters this process's root with
# `nsenter --root`. Printed before the chroot, a container that joined at once (a loaded machine
# is slow to exec) got the machine's root instead: "setpriv: failed to execute /manager".
exec chroot "$root" /bin/sh -c 'echo ready; exec /bin/sleep infinity'
