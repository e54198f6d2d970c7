#!/usr/bin/env bash
# Builds the container image from the Dockerfile and uses it as a user
# would (scripts/py/test_image.py lists every check): run with a port and a
# volume, healthcheck, uid 10001, read-only root filesystem, configure and
# predict with a real model (uploaded, and from the MLflow the suite runs),
# SIGTERM drain, restart from the volume, the environment variables users
# know, and the image's size.
#
#   scripts/test-image.sh         build both images; check the CPU image, and
#                                 that the GPU image falls back to the CPU
#                                 when it sees no GPU
#   scripts/test-image.sh --gpu   the same on a machine with an NVIDIA GPU and
#                                 its container toolkit: the GPU image must
#                                 run the model on CUDA and predict what the
#                                 CPU image does. CLS_GPU_RUN_ARGS gives the
#                                 container the GPU (default
#                                 `--device nvidia.com/gpu=all`, podman's CDI;
#                                 `--gpus all` with docker)
#
# Installs what is missing: podman (with runc where podman's default
# runtime cannot run), the base images (pulled, or made from the Debian
# archive when no registry is reachable: scripts/base-images.sh), the
# assets and venvs (scripts/setup.sh). Needs root, like podman here.
# Run it before submitting any change to the Dockerfile, deploy/ or the
# server's start-up.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly IMAGE=${CLS_IMAGE:-configurable-ls-backend}
readonly GPU_IMAGE=$IMAGE:gpu

ensure_podman() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman buildah)
  command -v runc >/dev/null || missing+=(runc)
  command -v slirp4netns >/dev/null || missing+=(slirp4netns)
  ((${#missing[@]} == 0)) && return
  log "installing ${missing[*]} (apt-get)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

build_image() {
  local started
  started=$(now_s)
  log "building $IMAGE (the README's command; a cold build compiles the server)"
  # Docker's image format: the OCI format has no HEALTHCHECK, and podman
  # would drop it.
  "${CLS_ENGINE[@]}" build --network host --format docker -t "$IMAGE" "$CLS_REPO_ROOT"
  log "image built in $(elapsed_since "$started")"
  started=$(now_s)
  log "building $GPU_IMAGE (--target runtime-gpu; downloads ~2 GB of CUDA libraries once)"
  "${CLS_ENGINE[@]}" build --network host --format docker --target runtime-gpu \
    -t "$GPU_IMAGE" "$CLS_REPO_ROOT"
  log "GPU image built in $(elapsed_since "$started")"
}

# The example hooks (wasm32-wasip2) and the host binary the container's
# predictions are compared with.
build_host_side() {
  cargo build --release --target wasm32-wasip2 --quiet \
    --manifest-path "$CLS_REPO_ROOT/examples/hooks/Cargo.toml"
  cargo build --quiet -p configurable-ls-backend --manifest-path "$CLS_REPO_ROOT/Cargo.toml"
}

main() {
  local gpu_args=()
  case ${1:-} in
    --gpu) gpu_args=(--gpu-run-args "${CLS_GPU_RUN_ARGS:---device nvidia.com/gpu=all}") ;;
    "") ;;
    *) die "usage: scripts/test-image.sh [--gpu]" ;;
  esac
  [[ $(id -u) == 0 ]] || die "run as root (podman builds and runs containers as root here)"
  ensure_podman
  container_engine
  "$CLS_REPO_ROOT/scripts/setup.sh"
  source "$CLS_CACHE/env.sh"
  "$CLS_REPO_ROOT/scripts/base-images.sh"
  build_image
  build_host_side

  export CLS_RUN_DIR=$CLS_CACHE/run/image-$$
  trap stop_services_on_exit EXIT
  "$CLS_REPO_ROOT/scripts/services.sh" start
  source "$CLS_RUN_DIR/services.env"

  "$CLS_CACHE/venv-tools/bin/python" "$CLS_REPO_ROOT/scripts/py/test_image.py" \
    --image "$IMAGE" \
    --engine "${CLS_ENGINE[*]}" \
    --host-bin "$CLS_REPO_ROOT/target/debug/configurable-ls-backend" \
    --hooks "$CLS_REPO_ROOT/examples/hooks/target/wasm32-wasip2/release" \
    --assets "$CLS_ASSETS_DIR" \
    --gpu-image "$GPU_IMAGE" "${gpu_args[@]}"
}

main "$@"
