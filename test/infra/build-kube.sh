#!/usr/bin/env bash
# Builds kube-apiserver and etcd from the Go module proxy into the cache dir (never into the
# repo). The pins live in test/infra/kube/go.mod and test/infra/etcd/go.mod; a binary is
# rebuilt only when its stamp (pins + go.sum + Go version + flags) no longer matches.
#
# Usage: test/infra/build-kube.sh [--force]
# Env:   CNPG_ROTATOR_CACHE  cache root (default ~/.cache/cnpg-rotator); binaries go to $CNPG_ROTATOR_CACHE/bin
set -euo pipefail

# Pins, repeated from the go.mod files so a mismatch between them is caught below.
KUBE_VERSION=v1.34.12
ETCD_VERSION=v3.6.16

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${CNPG_ROTATOR_CACHE:-$HOME/.cache/cnpg-rotator}
bindir=$cache/bin
force=false
[[ ${1:-} == --force ]] && force=true

log() { printf '[build-kube] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null || die "go is not on PATH; it is needed to build kube-apiserver and etcd"

# Never let go fetch another toolchain (only the module proxy is reachable); build like the
# upstream release (static, no cgo); keep go.mod/go.sum as committed.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"

grep -qE "^require k8s\.io/kubernetes ${KUBE_VERSION}\$|^\s+k8s\.io/kubernetes ${KUBE_VERSION}( |\$)" "$here/kube/go.mod" ||
  die "test/infra/kube/go.mod does not require k8s.io/kubernetes ${KUBE_VERSION}; update both pins together"
staging=v0.${KUBE_VERSION#v1.}
if grep -E '^\s+k8s\.io/[a-z0-9-]+ => k8s\.io/[a-z0-9-]+ v' "$here/kube/go.mod" | grep -qv " ${staging}\$"; then
  die "every k8s.io staging replace in test/infra/kube/go.mod must be ${staging}"
fi
grep -qE "^\s+go\.etcd\.io/etcd/server/v3 ${ETCD_VERSION}( |\$)|^require go\.etcd\.io/etcd/server/v3 ${ETCD_VERSION}\$" "$here/etcd/go.mod" ||
  die "test/infra/etcd/go.mod does not require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}"

mkdir -p "$bindir"

# build NAME MODULE_DIR PACKAGE LDFLAGS
build() {
  local name=$1 moddir=$2 pkg=$3 ldflags=$4
  local out=$bindir/$name stamp=$bindir/$name.stamp want
  want=$(
    printf '%s\n' "$pkg" "$ldflags" "$(go env GOVERSION)" "$(go env GOOS)/$(go env GOARCH)"
    cat "$moddir/go.mod" "$moddir/go.sum"
  )
  want=$(printf '%s' "$want" | sha256sum | cut -d' ' -f1)
  if ! $force && [[ -x $out && -f $stamp && $(<"$stamp") == "$want" ]]; then
    log "$name is up to date ($out)"
    return
  fi
  log "building $name from $pkg (the first build downloads modules and can take 10+ minutes on 2 cores)..."
  local start=$SECONDS pid
  # Build to a temp name (per process: test runs may call this concurrently) and rename, so
  # an interrupted build never leaves a half binary that looks current. go build is quiet
  # for minutes, hence the heartbeat.
  (cd "$moddir" && exec go build -trimpath -ldflags="-s -w $ldflags" -o "$out.tmp.$$" "$pkg") &
  pid=$!
  trap 'kill "$pid" 2>/dev/null || true; rm -f "$out.tmp.$$"' EXIT INT TERM
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (((SECONDS - start) % 30 == 0)); then log "... still building $name ($((SECONDS - start))s)"; fi
  done
  wait "$pid" || die "go build of $name failed"
  trap - EXIT INT TERM
  mv -f "$out.tmp.$$" "$out"
  printf '%s' "$want" >"$stamp"
  log "built $name in $((SECONDS - start))s: $("$out" --version 2>/dev/null | head -1)"
}

minor=${KUBE_VERSION#v1.}
minor=${minor%%.*}
# Same version variables the upstream release build sets, so /version and `kubectl version`
# report the real release instead of v0.0.0-master.
kube_ldflags="-X k8s.io/component-base/version.gitVersion=${KUBE_VERSION}"
kube_ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
kube_ldflags+=" -X k8s.io/component-base/version.gitMinor=${minor}"
kube_ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"

build etcd "$here/etcd" go.etcd.io/etcd/server/v3 ""
build kube-apiserver "$here/kube" k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
