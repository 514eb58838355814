#!/usr/bin/env bash
# Builds the real secret-store emulators the integration tests run, into a cache outside the
# repo: ${CNPG_ROTATOR_CACHE:-$HOME/.cache/cnpg-rotator}/bin/.
#
#   build.sh [gcp] [vault] [toxiproxy]     (no argument: gcp and vault)
#
# lowkey-vault (Azure Key Vault) is not built here: the Maven Central reachable here does not
# serve lowkey-vault-app, so servers.ts runs a jar built from its tagged source, found through
# LOWKEY_VAULT_JAR, $CNPG_ROTATOR_CACHE/jars/ or ../shared/emulators/ (see README.md beside this).
#
# Idempotent: each artifact has a stamp recording what it was built from (pinned version, the
# go.mod/go.sum of its module here, the Go toolchain); a matching stamp skips the step.
# Heavy compiles run under `nice` (CNPG_ROTATOR_BUILD_NICE, default 10) so they share the
# machine with other builds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${CNPG_ROTATOR_CACHE:-$HOME/.cache/cnpg-rotator}"
BIN="$CACHE/bin"
NICE="${CNPG_ROTATOR_BUILD_NICE:-10}"

# Pinned versions. The Go ones must match the go.mod files beside this script.
GCP_SM_EMULATOR_VERSION="v1.7.1"   # github.com/blackwell-systems/gcp-secret-manager-emulator
VAULT_VERSION="v1.21.0"            # github.com/hashicorp/vault (OpenBao is not served, see vault/go.mod)
TOXIPROXY_VERSION="v2.12.0"        # github.com/Shopify/toxiproxy/v2 (TCP faults: test/faults, faults-scenarios.test.ts)

log() { printf '[emulators] %s\n' "$*" >&2; }
die() { printf '[emulators] ERROR: %s\n' "$*" >&2; exit 1; }

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not on PATH ($2)"; }

# Stamp of a Go module directory: the pinned version, its go.mod and go.sum, the toolchain.
go_stamp() {
  local dir="$1" version="$2"
  { echo "$version"; go env GOVERSION; cat "$dir/go.mod" "$dir/go.sum"; } | sha256sum | cut -d' ' -f1
}

up_to_date() {
  local artifact="$1" stamp="$2"
  [[ -x "$artifact" && -f "$artifact.stamp" && "$(cat "$artifact.stamp")" == "$stamp" ]]
}

# go_build NAME MODULE_DIR PACKAGE VERSION: builds PACKAGE in MODULE_DIR to $BIN/NAME.
go_build() {
  local name="$1" dir="$2" pkg="$3" version="$4"
  need go "install Go from https://go.dev or Debian's golang package"
  local out="$BIN/$name" stamp
  stamp="$(go_stamp "$dir" "$version")"
  if up_to_date "$out" "$stamp"; then
    log "$name $version: up to date ($out)"
    return
  fi
  log "$name $version: building (module $dir, this can take minutes)…"
  mkdir -p "$BIN"
  local start=$SECONDS
  (cd "$dir" && GOFLAGS=-mod=readonly nice -n "$NICE" \
    go build -trimpath -ldflags='-s -w' -o "$out.tmp" "$pkg")
  mv -f "$out.tmp" "$out"
  echo "$stamp" >"$out.stamp"
  log "$name $version: built in $((SECONDS - start))s -> $out"
}

build_gcp() {
  go_build gcp-secret-manager-emulator "$HERE/gcp-secret-manager" \
    github.com/blackwell-systems/gcp-secret-manager-emulator/cmd/server-dual "$GCP_SM_EMULATOR_VERSION"
}

build_vault() {
  go_build vault "$HERE/vault" . "$VAULT_VERSION"
}

build_toxiproxy() {
  go_build toxiproxy-server "$HERE/toxiproxy" github.com/Shopify/toxiproxy/v2/cmd/server "$TOXIPROXY_VERSION"
}

main() {
  local targets=("$@")
  [[ ${#targets[@]} -gt 0 ]] || targets=(gcp vault)
  log "cache: $CACHE"
  for t in "${targets[@]}"; do
    case "$t" in
      gcp) build_gcp ;;
      vault) build_vault ;;
      toxiproxy) build_toxiproxy ;;
      all) build_gcp; build_vault; build_toxiproxy ;;
      *) die "unknown target '$t' (expected gcp, vault, toxiproxy or all)" ;;
    esac
  done
}

main "$@"
