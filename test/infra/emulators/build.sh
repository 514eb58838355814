#!/usr/bin/env bash
# Builds or fetches the real secret-store emulators the integration tests run, into a cache
# outside the repo: ${CNPG_ROTATOR_CACHE:-$HOME/.cache/cnpg-rotator}/{bin,jars}/.
#
#   build.sh [gcp] [vault] [lowkey]     (no argument: gcp and vault)
#
# Idempotent: each artifact has a stamp recording what it was built from (pinned version, the
# go.mod/go.sum of its module here, the Go toolchain); a matching stamp skips the step.
# Heavy compiles run under `nice` (CNPG_ROTATOR_BUILD_NICE, default 10) so they share the
# machine with other builds.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${CNPG_ROTATOR_CACHE:-$HOME/.cache/cnpg-rotator}"
BIN="$CACHE/bin"
JARS="$CACHE/jars"
NICE="${CNPG_ROTATOR_BUILD_NICE:-10}"

# Pinned versions. The Go ones must match the go.mod files beside this script.
GCP_SM_EMULATOR_VERSION="v1.7.1"   # github.com/blackwell-systems/gcp-secret-manager-emulator
VAULT_VERSION="v1.21.0"            # github.com/hashicorp/vault (OpenBao is not served, see vault/go.mod)
LOWKEY_VAULT_VERSION="7.1.13"      # com.github.nagyesta.lowkey-vault:lowkey-vault-app (see build_lowkey)

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

# lowkey-vault's runnable Spring Boot jar (7.x runs on Java 25). The Maven Central reachable
# here does not serve it (its maven-metadata.xml and every version's jar answer 404, while the
# same group's lowkey-vault-client is served), so this step fails with that explanation unless
# the jar is already in the cache, however it got there, or LOWKEY_VAULT_JAR points at one.
build_lowkey() {
  local jar="$JARS/lowkey-vault-app-$LOWKEY_VAULT_VERSION.jar"
  if [[ -n "${LOWKEY_VAULT_JAR:-}" ]]; then
    [[ -f "$LOWKEY_VAULT_JAR" ]] || die "LOWKEY_VAULT_JAR=$LOWKEY_VAULT_JAR does not exist"
    log "lowkey-vault: using LOWKEY_VAULT_JAR=$LOWKEY_VAULT_JAR"
    return
  fi
  if [[ -f "$jar" ]]; then
    log "lowkey-vault $LOWKEY_VAULT_VERSION: present ($jar)"
    return
  fi
  need mvn "apt-get install maven"
  mkdir -p "$JARS"
  log "lowkey-vault $LOWKEY_VAULT_VERSION: fetching from Maven Central…"
  if ! nice -n "$NICE" mvn -q -B org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy \
    -Dartifact="com.github.nagyesta.lowkey-vault:lowkey-vault-app:$LOWKEY_VAULT_VERSION:jar" \
    -DoutputDirectory="$JARS" -Dmdep.overWriteReleases=true >&2; then
    die "com.github.nagyesta.lowkey-vault:lowkey-vault-app:$LOWKEY_VAULT_VERSION could not be fetched: \
the Maven Central reachable here does not serve lowkey-vault-app (only lowkey-vault-client and \
-testcontainers). Put the jar at $jar or set LOWKEY_VAULT_JAR."
  fi
  log "lowkey-vault $LOWKEY_VAULT_VERSION: -> $jar"
}

main() {
  local targets=("$@")
  [[ ${#targets[@]} -gt 0 ]] || targets=(gcp vault)
  log "cache: $CACHE"
  for t in "${targets[@]}"; do
    case "$t" in
      gcp) build_gcp ;;
      vault) build_vault ;;
      lowkey) build_lowkey ;;
      all) build_gcp; build_vault; build_lowkey ;;
      *) die "unknown target '$t' (expected gcp, vault, lowkey or all)" ;;
    esac
  done
}

main "$@"
