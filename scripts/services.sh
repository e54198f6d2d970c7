#!/usr/bin/env bash
# Runs the real servers the end-to-end tests talk to, on 127.0.0.1 only:
#
#   mlflow        `mlflow server`, sqlite store, artifacts proxied (--serve-artifacts)
#   mlflow-auth   the same with --app-name basic-auth (admin user, random password)
#   label-studio  Label Studio 1.23.2 with the loopback env of ls-protocol.md §7
#
# Usage: scripts/services.sh start|stop|status|env
#   start   start all three (no-op if already running), register the fixture
#           models, write $CLS_RUN_DIR/services.env
#   stop    stop them by process group; leaves nothing running
#   status  health of each service and the (secret-free) env
#   env     print the path of services.env, for `source "$(scripts/services.sh env)"`
#
# State lives in CLS_RUN_DIR (default $CLS_CACHE/run/default): data, logs/,
# pids/, secrets.env and services.env (both mode 600: they hold the passwords).
#
# A fresh Label Studio spends ~50 s on migrations and the fixture models take
# ~55 s to register (two 90 MB transformers among them), so the first start
# snapshots a ready state into $CLS_CACHE/run/template-<hash> and later
# starts in an empty run dir copy it (~15 s). The hash covers the pins, the fixture scripts and this file.
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Absolute, because ownership checks compare it with /proc/<pid>/cwd.
RUN_DIR=$(realpath -m "${CLS_RUN_DIR:-$CLS_CACHE/run/default}")
readonly RUN_DIR
readonly PID_DIR=$RUN_DIR/pids
readonly LOG_DIR=$RUN_DIR/logs
readonly SERVICES=(mlflow mlflow-auth label-studio)
readonly MLFLOW_AUTH_USER=admin
readonly LS_USER=admin@example.com

# Health deadlines: measured ~12-18 s (MLflow) and ~50 s (fresh Label Studio)
# on an idle 2-core VM; all three start at once here, so allow ~3x.
readonly MLFLOW_HEALTH_DEADLINE_S=90
readonly LS_HEALTH_DEADLINE_S=240
readonly STOP_GRACE_S=15

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

load_setup_env() {
  local env_file=$CLS_CACHE/env.sh
  [[ -f $env_file ]] || die "$env_file missing: run scripts/setup.sh first"
  # shellcheck source=/dev/null
  source "$env_file"
  [[ -n ${CLS_LABEL_STUDIO_BIN:-} ]] ||
    die "Label Studio is not installed (setup.sh --no-services?): run scripts/setup.sh"
}

# --- process handling -------------------------------------------------------

pid_of() {
  local file=$PID_DIR/$1.pid
  [[ -f $file ]] && cat "$file"
}

# True while any process of the service's session is alive. setsid makes the
# service its own session and group leader, so its pid names both.
service_alive() {
  local pid
  pid=$(pid_of "$1") || return 1
  owned_session "$pid"
}

# True if session $1 has a process working in our run dir (launch cd's there).
# A pid file can outlive its processes (reboot, kill -9), and the pid may now
# lead someone else's session: never signal that one.
owned_session() {
  local member cwd
  for member in $(pgrep -s "$1"); do
    cwd=$(readlink "/proc/$member/cwd" 2>/dev/null) || continue
    [[ $cwd == "$RUN_DIR"/* ]] && return 0
  done
  return 1
}

# Starts "${@:4}" in directory $2 as a new session, output to logs/$1.log,
# with the variables in the array named $3 exported. They are exported in the
# subshell rather than passed through `env`, so passwords never show in `ps`.
# mlflow forks uvicorn workers and Label Studio forks too; a session of their
# own lets stop_services reach every descendant by one id.
launch() {
  local name=$1 dir=$2 pid pgid
  local -n launch_env=$3
  shift 3
  mkdir -p "$dir" "$PID_DIR" "$LOG_DIR"
  # No job control in a script, so the subshell is not a group leader and
  # setsid execs in place: $! is the session id.
  (cd "$dir" && export "${launch_env[@]}" && exec setsid "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1) &
  pid=$!
  echo "$pid" >"$PID_DIR/$name.pid"
  # Until the subshell has exec'd setsid it still sits in our group; once it
  # has, its group must be its own or stop_services could not reach it.
  for _ in {1..50}; do
    pgid=$(ps -o pgid= -p "$pid" | tr -d ' ') || break
    [[ $pgid == "$pid" ]] && return
    sleep 0.02
  done
  die "$name: expected a new session led by pid $pid, got group '${pgid:-gone}'"
}

# SIGTERM to each service's process group at once (each takes seconds to
# shut down gracefully), then SIGKILL whatever is left of a session after
# STOP_GRACE_S. Group id and session id both equal the recorded pid.
stop_services() {
  local name pid deadline live=()
  for name in "$@"; do
    pid=$(pid_of "$name") || continue
    if owned_session "$pid"; then
      kill -TERM -- "-$pid" 2>/dev/null || true
      live+=("$name")
    fi
  done
  deadline=$((SECONDS + STOP_GRACE_S))
  for name in "${live[@]}"; do
    pid=$(pid_of "$name")
    while pgrep -s "$pid" >/dev/null && ((SECONDS < deadline)); do
      sleep 0.2
    done
    if pgrep -s "$pid" >/dev/null; then
      log "$name did not exit within ${STOP_GRACE_S}s; killing"
      pkill -KILL -s "$pid" || true
    fi
    log "stopped $name"
  done
  for name in "$@"; do
    rm -f "$PID_DIR/$name.pid"
  done
}

# Polls $2 until it answers 2xx. Fails early, with the log tail, if the
# service's processes are gone (a port clash or a bad flag).
wait_healthy() {
  local name=$1 url=$2 deadline_s=$3 started=$4 deadline
  deadline=$((SECONDS + deadline_s))
  until curl -fsS --max-time 2 -o /dev/null "$url" 2>/dev/null; do
    if ! service_alive "$name"; then
      tail -n 30 "$LOG_DIR/$name.log" >&2 || true
      die "$name exited during start-up (log: $LOG_DIR/$name.log)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$LOG_DIR/$name.log" >&2 || true
      die "$name not healthy at $url after ${deadline_s}s (log: $LOG_DIR/$name.log)"
    fi
    sleep 0.5
  done
  log "$name up at ${url%/health} in $(elapsed_since "$started")"
}

# --- run dir state ----------------------------------------------------------

# Secrets are made once per state (they are baked into the databases: the LS
# token and the MLflow admin password are stored at first start).
ensure_secrets() {
  local file=$RUN_DIR/secrets.env
  [[ -f $file ]] && return
  mkdir -p "$RUN_DIR"
  (
    umask 077
    {
      printf 'MLFLOW_AUTH_PASSWORD=%q\n' "$(random_secret)"
      printf 'MLFLOW_FLASK_SECRET=%q\n' "$(random_secret)"
      printf 'LS_PASSWORD=%q\n' "$(random_secret)"
      printf 'LS_TOKEN=%q\n' "$(random_secret | tr -dc 'a-zA-Z0-9' | head -c 40)"
    } >"$file"
  )
}

load_secrets() {
  # shellcheck source=/dev/null
  source "$RUN_DIR/secrets.env"
}

template_dir() {
  local key
  key=$(hash_files "$CLS_REPO_ROOT/scripts/services.sh" \
    "$CLS_REPO_ROOT/scripts/requirements-label-studio.txt" \
    "$CLS_REPO_ROOT/scripts/requirements-tools.txt" \
    "$CLS_REPO_ROOT/scripts/py/register_models.py" \
    "$CLS_REPO_ROOT/scripts/py/onnx_mlflow.py" \
    "$CLS_ASSETS_DIR/models/.make_models.stamp")
  printf '%s\n' "$CLS_CACHE/run/template-${key:0:16}"
}

# Data of one state: everything but logs, pids and the generated env/ini.
readonly STATE_PARTS=(secrets.env mlflow mlflow-auth label-studio .registered)

seed_from_template() {
  local template=$1 part
  [[ -d $template && ! -e $RUN_DIR/secrets.env ]] || return 1
  mkdir -p "$RUN_DIR"
  for part in "${STATE_PARTS[@]}"; do
    # Without secrets.env, whatever is here is a failed start's debris.
    rm -rf "${RUN_DIR:?}/$part"
    cp -a "$template/$part" "$RUN_DIR/"
  done
  log "seeded $RUN_DIR from $(basename "$template")"
}

# Snapshot of the running, registered state. sqlite's online backup gives a
# consistent copy of each database while the servers run; everything else
# (artifacts, LS media) is written once and is idle by now.
save_template() {
  local template=$1 tmp part
  [[ -d $template ]] && return
  tmp=$template.partial.$$
  rm -rf "$tmp"
  mkdir -p "$tmp"
  for part in "${STATE_PARTS[@]}"; do
    cp -a "$RUN_DIR/$part" "$tmp/"
  done
  find "$tmp" -type f \( -name '*-wal' -o -name '*-shm' -o -name '*-journal' \) -delete
  find "$RUN_DIR" -type f \( -name '*.db' -o -name '*.sqlite3' \) -print0 |
    while IFS= read -r -d '' db; do
      python3 - "$db" "$tmp/${db#"$RUN_DIR"/}" <<'PY'
import sqlite3, sys
src, dst = sqlite3.connect(sys.argv[1]), sqlite3.connect(sys.argv[2])
src.backup(dst)
dst.close(); src.close()
PY
    done
  # Another start may have raced us to it; either copy is good.
  mv -T "$tmp" "$template" 2>/dev/null || rm -rf "$tmp"
  # Templates for older versions of the inputs are dead weight (~40 MB each).
  find "$CLS_CACHE/run" -maxdepth 1 -name 'template-*' ! -name "$(basename "$template")*" \
    -exec rm -rf {} +
  log "saved template $(basename "$template") for faster starts"
}

# --- the three services -----------------------------------------------------

start_mlflow() {
  local name=$1 port=$2 dir=$RUN_DIR/$1
  local args=(server --host 127.0.0.1 --port "$port" --workers 1
    --backend-store-uri "sqlite:///$dir/mlflow.db"
    --serve-artifacts --artifacts-destination "$dir/mlartifacts")
  local env=(
    # The job runner (huey, ~7 processes per server) only serves GenAI jobs;
    # nothing here uses it, and on 2 cores it slows every start.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
  )
  if [[ $name == mlflow-auth ]]; then
    write_auth_ini "$dir"
    args+=(--app-name basic-auth)
    # The auth app signs CSRF tokens with this key and refuses to start without it.
    env+=(MLFLOW_AUTH_CONFIG_PATH="$dir/basic_auth.ini" MLFLOW_FLASK_SERVER_SECRET_KEY="$MLFLOW_FLASK_SECRET")
  fi
  launch "$name" "$dir" env "$CLS_MLFLOW_BIN" "${args[@]}"
}

# The admin password is read only when the user store is empty (first start);
# database_uri must be absolute or the auth DB lands in the cwd.
write_auth_ini() {
  local dir=$1
  mkdir -p "$dir"
  (
    umask 077
    cat >"$dir/basic_auth.ini" <<EOF
[mlflow]
default_permission = READ
database_uri = sqlite:///$dir/basic_auth.db
admin_username = $MLFLOW_AUTH_USER
admin_password = $MLFLOW_AUTH_PASSWORD
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
  )
}

start_label_studio() {
  local port=$1 dir=$RUN_DIR/label-studio
  mkdir -p "$RUN_DIR/files"
  # Exactly the loopback env of ls-protocol.md §7: 1.23.2 otherwise refuses
  # 127.0.0.1 backends (SSRF guard) and legacy `Token` auth.
  local env=(
    LABEL_STUDIO_BASE_DATA_DIR="$dir"
    LABEL_STUDIO_USERNAME="$LS_USER"
    LABEL_STUDIO_PASSWORD="$LS_PASSWORD"
    LABEL_STUDIO_USER_TOKEN="$LS_TOKEN"
    LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true
    ML_BLOCK_LOCAL_IP=false
    SSRF_PROTECTION_ENABLED=false
    LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true
    LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT="$RUN_DIR/files"
    LATEST_VERSION_CHECK=false
    COLLECT_ANALYTICS=false
    SENTRY_DSN=
    FRONTEND_SENTRY_DSN=
  )
  launch label-studio "$dir" env \
    "$CLS_LABEL_STUDIO_BIN" start --no-browser --internal-host 127.0.0.1 --port "$port"
}

# Registers the fixture models into both MLflow servers (once per state).
register_models() {
  local mlflow_uri=$1 auth_uri=$2 started
  [[ -f $RUN_DIR/.registered ]] && return
  started=$(now_s)
  log "registering fixture models (log: $LOG_DIR/register.log)"
  if ! {
    MLFLOW_TRACKING_URI=$mlflow_uri "$CLS_TOOLS_PYTHON" -B \
      "$CLS_REPO_ROOT/scripts/py/register_models.py" "$CLS_ASSETS_DIR/models" &&
      MLFLOW_TRACKING_URI=$auth_uri MLFLOW_TRACKING_USERNAME=$MLFLOW_AUTH_USER \
        MLFLOW_TRACKING_PASSWORD=$MLFLOW_AUTH_PASSWORD "$CLS_TOOLS_PYTHON" -B \
        "$CLS_REPO_ROOT/scripts/py/register_models.py" "$CLS_ASSETS_DIR/models" orientation
  } >>"$LOG_DIR/register.log" 2>&1; then
    tail -n 30 "$LOG_DIR/register.log" >&2
    die "registering models failed (log: $LOG_DIR/register.log)"
  fi
  date -u +%FT%TZ >"$RUN_DIR/.registered"
  log "models registered in $(elapsed_since "$started")"
}

write_services_env() {
  local mlflow_port=$1 auth_port=$2 ls_port=$3
  (
    umask 077
    {
      echo "# Written by scripts/services.sh start; holds secrets."
      printf 'export CLS_RUN_DIR=%q\n' "$RUN_DIR"
      printf 'export CLS_MLFLOW_URI=%q\n' "http://127.0.0.1:$mlflow_port"
      printf 'export CLS_MLFLOW_AUTH_URI=%q\n' "http://127.0.0.1:$auth_port"
      printf 'export CLS_MLFLOW_AUTH_USER=%q\n' "$MLFLOW_AUTH_USER"
      printf 'export CLS_MLFLOW_AUTH_PASSWORD=%q\n' "$MLFLOW_AUTH_PASSWORD"
      printf 'export CLS_LABEL_STUDIO_URL=%q\n' "http://127.0.0.1:$ls_port"
      printf 'export CLS_LABEL_STUDIO_TOKEN=%q\n' "$LS_TOKEN"
      printf 'export CLS_LABEL_STUDIO_USER=%q\n' "$LS_USER"
      printf 'export CLS_LABEL_STUDIO_PASSWORD=%q\n' "$LS_PASSWORD"
      printf 'export CLS_LABEL_STUDIO_FILES_ROOT=%q\n' "$RUN_DIR/files"
    } >"$RUN_DIR/services.env.partial"
  )
  mv -f "$RUN_DIR/services.env.partial" "$RUN_DIR/services.env"
}

# services.env without the secret values.
print_env_redacted() {
  sed -n 's/^export //p' "$RUN_DIR/services.env" |
    sed -E 's/^((CLS_[A-Z_]*(PASSWORD|TOKEN))=).*/\1<redacted>/'
}

# --- commands ---------------------------------------------------------------

cmd_start() {
  local started template fresh=0 mlflow_port auth_port ls_port s
  started=$(now_s)
  load_setup_env
  if all_running; then
    log "already running in $RUN_DIR"
    print_env_redacted
    return
  fi
  cmd_stop_quietly
  template=$(template_dir)
  if ! seed_from_template "$template" && [[ ! -f $RUN_DIR/.registered ]]; then
    fresh=1
    log "first start in $RUN_DIR: Label Studio migrates its database (~1 min)"
  fi
  ensure_secrets
  load_secrets
  rm -f "$RUN_DIR/services.env"

  mlflow_port=$(free_port)
  auth_port=$(free_port)
  ls_port=$(free_port)
  s=$(now_s)
  # If anything below fails, do not leave half the services running.
  trap 'log "start failed; stopping what was started"; cmd_stop_quietly' EXIT
  start_mlflow mlflow "$mlflow_port"
  start_mlflow mlflow-auth "$auth_port"
  start_label_studio "$ls_port"

  wait_healthy mlflow "http://127.0.0.1:$mlflow_port/health" "$MLFLOW_HEALTH_DEADLINE_S" "$s"
  wait_healthy mlflow-auth "http://127.0.0.1:$auth_port/health" "$MLFLOW_HEALTH_DEADLINE_S" "$s"
  register_models "http://127.0.0.1:$mlflow_port" "http://127.0.0.1:$auth_port"
  wait_healthy label-studio "http://127.0.0.1:$ls_port/health" "$LS_HEALTH_DEADLINE_S" "$s"
  trap - EXIT

  write_services_env "$mlflow_port" "$auth_port" "$ls_port"
  if ((fresh)); then
    save_template "$template"
  fi
  print_env_redacted
  log "services started in $(elapsed_since "$started"); env: $RUN_DIR/services.env"
}

all_running() {
  local name
  [[ -f $RUN_DIR/services.env ]] || return 1
  for name in "${SERVICES[@]}"; do
    service_alive "$name" || return 1
  done
}

cmd_stop() {
  stop_services "${SERVICES[@]}"
  rm -f "$RUN_DIR/services.env"
}

cmd_stop_quietly() {
  cmd_stop 2>/dev/null
}

cmd_status() {
  local name pid state
  for name in "${SERVICES[@]}"; do
    if service_alive "$name"; then
      pid=$(pid_of "$name")
      state="running (session $pid)"
    else
      state="stopped"
    fi
    printf '%-13s %s\n' "$name" "$state"
  done
  if [[ -f $RUN_DIR/services.env ]]; then
    print_env_redacted
  fi
}

cmd_env() {
  [[ -f $RUN_DIR/services.env ]] || die "services not running in $RUN_DIR (scripts/services.sh start)"
  printf '%s\n' "$RUN_DIR/services.env"
}

main() {
  case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    -h | --help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
