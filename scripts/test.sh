#!/usr/bin/env bash
# Runs the whole test suite, end-to-end tests included: this is the command
# the README and CI (.ci/run) give.
#
#   1. scripts/setup.sh (seconds when the cache is warm)
#   2. builds the example and fixture hooks (wasm32-wasip2 workspaces, and
#      the Python ones with componentize-py: scripts/build-python-hooks.sh)
#   3. starts real MLflow, MLflow basic-auth and Label Studio in a run dir of
#      its own (scripts/services.sh), stopped again on exit
#   4. CLS_REQUIRE_E2E=1 cargo nextest run --workspace --no-fail-fast
#      (cargo test --workspace without nextest)
#
# Usage: scripts/test.sh [args for cargo nextest run / cargo test]
#   e.g. scripts/test.sh -E 'test(label_studio)'
# Exits with the test runner's status; its summary is the last output.
# Service logs of a failed run stay in $CLS_CACHE/run/test-<pid>/logs until
# the next run.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Workspaces of wasm32-wasip2 hook crates, excluded from the main workspace.
readonly HOOK_WORKSPACES=(examples/hooks tests/fixtures/hooks)

build_hook_workspaces() {
  local dir
  for dir in "${HOOK_WORKSPACES[@]}"; do
    if [[ ! -f $CLS_REPO_ROOT/$dir/Cargo.toml ]]; then
      log "no $dir/Cargo.toml yet; skipping its hooks"
      continue
    fi
    log "building hooks in $dir"
    cargo build --release --target wasm32-wasip2 --manifest-path "$CLS_REPO_ROOT/$dir/Cargo.toml"
  done
}

# A killed test run (SIGKILL, closed terminal) cannot stop its services;
# the next run does, for every test-<pid> dir whose test.sh is gone.
reap_stale_runs() {
  local dir owner
  for dir in "$CLS_CACHE"/run/test-*; do
    [[ -d $dir ]] || continue
    owner=${dir##*-}
    kill -0 "$owner" 2>/dev/null && continue
    CLS_RUN_DIR=$dir "$CLS_REPO_ROOT/scripts/services.sh" stop >/dev/null 2>&1 || true
    rm -rf "$dir"
  done
}

run_tests() {
  cd "$CLS_REPO_ROOT"
  if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast "$@"
  else
    log "cargo-nextest not found; using cargo test"
    cargo test --workspace --no-fail-fast "$@"
  fi
}

main() {
  "$CLS_REPO_ROOT/scripts/setup.sh"
  # shellcheck source=/dev/null
  source "$CLS_CACHE/env.sh"
  build_hook_workspaces
  "$CLS_REPO_ROOT/scripts/build-python-hooks.sh"

  reap_stale_runs
  export CLS_RUN_DIR=$CLS_CACHE/run/test-$$
  trap stop_services_on_exit EXIT
  "$CLS_REPO_ROOT/scripts/services.sh" start
  # shellcheck source=/dev/null
  source "$CLS_RUN_DIR/services.env"
  log "service logs: $CLS_RUN_DIR/logs"

  # End-to-end tests fail, rather than skip, when a service is missing; the
  # hooks were built above, so tests need not run cargo again.
  export CLS_REQUIRE_E2E=1 CLS_HOOKS_PREBUILT=1
  run_tests "$@"
}

main "$@"
