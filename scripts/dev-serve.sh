#!/usr/bin/env bash
# Runs the server locally in demo mode, with ORT_DYLIB_PATH and the test
# assets from the cache (scripts/setup.sh; no Label Studio venv needed).
#
# Usage: scripts/dev-serve.sh [more `serve` flags]
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

"$CLS_REPO_ROOT/scripts/setup.sh" --no-services
# shellcheck source=/dev/null
source "$CLS_CACHE/env.sh"
cd "$CLS_REPO_ROOT"
exec cargo run --release -p configurable-ls-backend -- serve --demo "$@"
