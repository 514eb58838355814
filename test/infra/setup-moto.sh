#!/usr/bin/env bash
# Installs moto's server mode (a real HTTP server speaking the AWS APIs, used as AWS Secrets
# Manager in the integration tests) into a Python venv in the cache dir. Idempotent: the venv
# is rebuilt only when the pins or the Python version change. The tests start it through
# test/infra/moto/server.py, which patches moto where it departs from AWS (see moto/README.md).
#
# Usage: test/infra/setup-moto.sh [--force]
# Env:   CNPG_ROTATOR_CACHE   cache root (default ~/.cache/cnpg-rotator); venv in $CNPG_ROTATOR_CACHE/moto-venv
#        CNPG_ROTATOR_PYTHON  Python to build the venv with (default python3)
set -euo pipefail

MOTO_VERSION=5.2.5

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${CNPG_ROTATOR_CACHE:-$HOME/.cache/cnpg-rotator}
venv=$cache/moto-venv
python=${CNPG_ROTATOR_PYTHON:-python3}
constraints=$here/moto/constraints.txt
force=false
[[ ${1:-} == --force ]] && force=true

log() { printf '[setup-moto] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

command -v "$python" >/dev/null || die "$python is not on PATH; it is needed for moto"
grep -qx "moto==${MOTO_VERSION}" "$constraints" || die "$constraints does not pin moto==${MOTO_VERSION}"

want=$(
  printf '%s\n' "moto[server]==${MOTO_VERSION}" "$("$python" -c 'import sys; print(sys.version)')"
  cat "$constraints"
)
want=$(printf '%s' "$want" | sha256sum | cut -d' ' -f1)
stamp=$venv/.cnpg-rotator-stamp
if ! $force && [[ -x $venv/bin/moto_server && -f $stamp && $(<"$stamp") == "$want" ]]; then
  log "moto ${MOTO_VERSION} is up to date ($venv)"
  exit 0
fi

log "installing moto[server]==${MOTO_VERSION} into $venv (takes a minute or two)..."
start=$SECONDS
# A venv is not relocatable (absolute paths in its scripts), so it is made in place; the
# stamp is written last, so a half-made venv is rebuilt next time.
rm -rf "$venv"
mkdir -p "$cache"
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
  "moto[server]==${MOTO_VERSION}" -c "$constraints"
"$venv/bin/python" -c 'import moto.server, moto.secretsmanager' ||
  die "moto installed but does not import"
printf '%s' "$want" >"$stamp"
log "installed moto ${MOTO_VERSION} in $((SECONDS - start))s"
