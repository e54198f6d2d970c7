#!/usr/bin/env bash
# Builds the Python hooks into WebAssembly components with componentize-py:
#
#   examples/hooks/<name>-py/app.py     → examples/hooks/target-py/<name>.wasm
#   tests/fixtures/hooks-py/<name>/app.py → tests/fixtures/hooks-py/target/<name>.wasm
#
# (<name> with dashes turned into underscores, as cargo names the Rust ones.)
# Each hook is built against hook-sdk/wit/hooks.wit with the SDK in
# hook-sdk/python on its path; its world comes from app.py (export_pre_hook →
# pre-hook, else post-hook). A hook is rebuilt only when its inputs (app dir,
# SDK, WIT, componentize-py version) changed, so a second run takes about a
# second.
# componentize-py is installed on first use into $CLS_CACHE/venv-componentize.
#
# Usage: scripts/build-python-hooks.sh [--force] [--no-test] [-j N] [NAME...]
#   --force    rebuild even when up to date
#   --no-test  skip the SDK unit tests (hook-sdk/python/tests/run.py)
#   -j N       parallel builds (default: half the cores, at least 1)
#   NAME       only these hooks (directory names, e.g. classification-post-py raises)
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

readonly COMPONENTIZE_PY_VERSION=0.25.1
readonly VENV=$CLS_CACHE/venv-componentize
readonly SDK=$CLS_REPO_ROOT/hook-sdk/python
# The SDK's own copy of wit/ (the Rust SDK builds against the same one).
readonly WIT=$CLS_REPO_ROOT/hook-sdk/wit

# componentize-py keeps ~1.3 cores busy: more parallel builds than half the
# cores only make each one slower.
force=0 run_tests=1 jobs=$(( $(nproc) / 2 > 1 ? $(nproc) / 2 : 1 ))
names=()
while (($#)); do
  case $1 in
    --force) force=1 ;;
    --no-test) run_tests=0 ;;
    -j) jobs=${2:?-j needs a number}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) names+=("$1") ;;
  esac
  shift
done

ensure_componentize_py() {
  local stamp=$VENV/.cls-stamp started
  if stamp_matches "$stamp" "$COMPONENTIZE_PY_VERSION" && [[ -x $VENV/bin/componentize-py ]]; then
    return
  fi
  started=$(now_s)
  log "installing componentize-py $COMPONENTIZE_PY_VERSION in $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --no-input "componentize-py==$COMPONENTIZE_PY_VERSION"
  printf '%s' "$COMPONENTIZE_PY_VERSION" >"$stamp"
  log "componentize-py ready in $(elapsed_since "$started")"
}

# "<app dir> <output .wasm>" for every hook, in a stable order.
list_hooks() {
  local dir name
  for dir in "$CLS_REPO_ROOT"/examples/hooks/*-py; do
    [[ -f $dir/app.py ]] || continue
    name=$(basename "$dir")
    name=${name%-py}
    printf '%s %s\n' "$dir" "$CLS_REPO_ROOT/examples/hooks/target-py/${name//-/_}.wasm"
  done
  for dir in "$CLS_REPO_ROOT"/tests/fixtures/hooks-py/*/; do
    dir=${dir%/}
    [[ -f $dir/app.py ]] || continue
    name=$(basename "$dir")
    printf '%s %s\n' "$dir" "$CLS_REPO_ROOT/tests/fixtures/hooks-py/target/${name//-/_}.wasm"
  done
}

wanted() {
  local dir=$1 n
  ((${#names[@]} == 0)) && return 0
  for n in "${names[@]}"; do
    [[ $(basename "$dir") == "$n" ]] && return 0
  done
  return 1
}

# Hash of everything a component is made from.
inputs_hash() {
  local dir=$1
  {
    printf 'componentize-py %s\n' "$COMPONENTIZE_PY_VERSION"
    find "$dir" "$SDK/cls_hooks" "$WIT" -type f \( -name '*.py' -o -name '*.wit' -o -name '*.toml' \) \
      -not -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
}

world_of() {
  if grep -q 'export_pre_hook' "$1/app.py"; then echo pre-hook; else echo post-hook; fi
}

# Builds one hook; prints "name seconds bytes" on success.
build_one() {
  local dir=$1 out=$2 stamp want started secs size
  stamp=$(dirname "$out")/.$(basename "$out" .wasm).stamp
  want=$(inputs_hash "$dir")
  if ((force == 0)) && [[ -f $out ]] && stamp_matches "$stamp" "$want"; then
    printf '%s cached %s\n' "$(basename "$out")" "$(stat -c %s "$out")"
    return
  fi
  mkdir -p "$(dirname "$out")"
  started=$(now_s)
  # The bytecode componentize-py compiles goes into the component, not the tree.
  PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/componentize-py" -q -d "$WIT" -w "$(world_of "$dir")" \
    componentize -p "$SDK" -p "$dir" app -o "$out.tmp"
  mv "$out.tmp" "$out"
  printf '%s' "$want" >"$stamp"
  secs=$(seconds_since "$started")
  size=$(stat -c %s "$out")
  printf '%s %s %s\n' "$(basename "$out")" "$secs" "$size"
}

main() {
  local started dir out failed=0
  started=$(now_s)
  ensure_componentize_py
  if ((run_tests)); then
    "$VENV/bin/python" "$SDK/tests/run.py" --componentize-py "$VENV/bin/componentize-py" >"$CLS_CACHE/python-sdk-tests.log" 2>&1 ||
      { cat "$CLS_CACHE/python-sdk-tests.log" >&2; die "SDK unit tests failed"; }
    log "SDK unit tests: $(tail -n1 "$CLS_CACHE/python-sdk-tests.log")"
  fi
  RESULTS=$(mktemp)
  trap 'rm -f "$RESULTS"' EXIT
  local running=0
  while read -r dir out; do
    wanted "$dir" || continue
    { build_one "$dir" "$out" >>"$RESULTS" || echo "$(basename "$out") FAILED 0" >>"$RESULTS"; } &
    running=$((running + 1))
    if ((running >= jobs)); then
      wait -n || true
      running=$((running - 1))
    fi
  done < <(list_hooks)
  wait
  # Leftovers of an older componentize-py run with bytecode on.
  find "$SDK" "$CLS_REPO_ROOT/examples/hooks" "$CLS_REPO_ROOT/tests/fixtures/hooks-py" \
    -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
  printf '%-28s %10s %10s\n' component 'build (s)' 'size (MiB)' >&2
  while read -r name secs size; do
    [[ $secs == FAILED ]] && failed=1
    printf '%-28s %10s %10s\n' "$name" "$secs" "$(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1048576 }')" >&2
  done < <(sort "$RESULTS")
  ((failed == 0)) || die "some hooks failed to build (see above)"
  log "done in $(elapsed_since "$started")"
}

main
