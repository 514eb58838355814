#!/usr/bin/env bash
# Builds CloudNativePG's `manager` (operator and instance manager are one binary) from the Go
# module proxy into the cache dir as cnpg-manager, and copies the CRDs of the same module
# version beside it. Nothing of it goes into the repo. The pin lives in
# test/infra/cnpg/go.mod; the binary is rebuilt only when its stamp (pins + go.sum + Go
# version + flags) no longer matches.
#
# Usage: test/infra/build-cnpg.sh [--force]
# Env:   CNPG_ROTATOR_CACHE  cache root (default ~/.cache/cnpg-rotator)
#        binary: $CNPG_ROTATOR_CACHE/bin/cnpg-manager; CRDs: $CNPG_ROTATOR_CACHE/cnpg-crds/*.yaml
set -euo pipefail

# The pin, repeated from the go.mod so a mismatch between them is caught below.
CNPG_VERSION=v1.30.0
module=github.com/cloudnative-pg/cloudnative-pg

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
moddir=$here/cnpg
cache=${CNPG_ROTATOR_CACHE:-$HOME/.cache/cnpg-rotator}
bindir=$cache/bin
crddir=$cache/cnpg-crds
force=false
[[ ${1:-} == --force ]] && force=true

log() { printf '[build-cnpg] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v go >/dev/null || die "go is not on PATH; it is needed to build the CloudNativePG manager"

# Same settings as build-kube.sh: no toolchain download, static like the upstream image,
# go.mod/go.sum as committed.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"

grep -qE "^\s+${module//./\\.} ${CNPG_VERSION}( |\$)" "$moddir/go.mod" ||
  die "test/infra/cnpg/go.mod does not require ${module} ${CNPG_VERSION}; update both pins together"

mkdir -p "$bindir"
out=$bindir/cnpg-manager
stamp=$bindir/cnpg-manager.stamp
pkg=$module/cmd/manager
ldflags="-X $module/pkg/versions.buildCommit=${CNPG_VERSION}"

want=$(
  printf '%s\n' "$pkg" "$ldflags" "$(go env GOVERSION)" "$(go env GOOS)/$(go env GOARCH)"
  cat "$moddir/go.mod" "$moddir/go.sum"
)
want=$(printf '%s' "$want" | sha256sum | cut -d' ' -f1)

copy_crds() {
  # The CRDs are part of the module that was just verified against go.sum.
  local src
  src=$(cd "$moddir" && go list -m -f '{{.Dir}}' "$module")/config/crd/bases
  [[ -d $src ]] || die "no CRDs at $src"
  rm -rf "$crddir.tmp.$$"
  mkdir -p "$crddir.tmp.$$"
  cp "$src"/*.yaml "$crddir.tmp.$$/"
  chmod 644 "$crddir.tmp.$$"/*.yaml
  printf '%s' "$want" >"$crddir.tmp.$$/stamp"
  rm -rf "$crddir"
  mv "$crddir.tmp.$$" "$crddir"
}

if ! $force && [[ -x $out && -f $stamp && $(<"$stamp") == "$want" ]]; then
  log "cnpg-manager is up to date ($out)"
  [[ -f $crddir/stamp && $(<"$crddir/stamp") == "$want" ]] || copy_crds
  exit 0
fi

log "building cnpg-manager from $pkg@$CNPG_VERSION (about 6 minutes on 2 cores the first time, most of it downloading and compiling modules)..."
start=$SECONDS
# Temp name per process and rename, so an interrupted build never leaves a half binary that
# looks current; nice, because the machine is shared. go build is quiet for minutes, hence
# the heartbeat.
(cd "$moddir" && exec nice -n 10 go build -trimpath -ldflags="-s -w $ldflags" -o "$out.tmp.$$" "$pkg") &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$out.tmp.$$"; rm -rf "$crddir.tmp.$$"' EXIT INT TERM
while kill -0 "$pid" 2>/dev/null; do
  sleep 1
  if (((SECONDS - start) % 30 == 0)); then log "... still building cnpg-manager ($((SECONDS - start))s)"; fi
done
wait "$pid" || die "go build of cnpg-manager failed"
copy_crds
trap - EXIT INT TERM
mv -f "$out.tmp.$$" "$out"
printf '%s' "$want" >"$stamp"
log "built cnpg-manager in $((SECONDS - start))s: $("$out" version 2>/dev/null | head -1)"
