#!/usr/bin/env bash
# Prepares every real server the integration tests start: kube-apiserver + etcd and the
# CloudNativePG operator/instance manager (built from the Go module proxy) and moto.
# Idempotent and quick once cached; .ci/run calls it first.
#
# Env: CNPG_ROTATOR_CACHE  cache root (default ~/.cache/cnpg-rotator)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
start=$SECONDS
"$here/build-kube.sh"
"$here/build-cnpg.sh"
"$here/setup-moto.sh"
printf '[setup] test servers ready in %ss (cache: %s)\n' "$((SECONDS - start))" "${CNPG_ROTATOR_CACHE:-$HOME/.cache/cnpg-rotator}" >&2
