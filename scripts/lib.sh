# shellcheck shell=bash
# Shared helpers for scripts/*.sh. Sourced, never run: it only defines
# variables and functions, so sourcing it has no side effects.
#
# Owns: where the cache lives, logging, hashing and small process helpers.
# Does not own: what goes into the cache (setup.sh) or which services run
# (services.sh).

# Repository root, whichever directory the caller was started from.
CLS_REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CLS_REPO_ROOT

# Everything downloaded or generated lives outside the repo so that
# `git clean`, worktrees and other engineers' checkouts share one copy.
CLS_CACHE=${CLS_CACHE:-$HOME/.cache/configurable-ls-backend}
export CLS_CACHE

# Name of the calling script, used as the prefix of progress lines.
CLS_LOG_PREFIX=${CLS_LOG_PREFIX:-$(basename "$0" .sh)}

log() {
  printf '%s: %s\n' "$CLS_LOG_PREFIX" "$*" >&2
}

die() {
  printf '%s: error: %s\n' "$CLS_LOG_PREFIX" "$*" >&2
  exit 1
}

# Seconds since the epoch with millisecond precision, for timings.
now_s() {
  date +%s.%N
}

# Prints the seconds since $1 (from now_s), e.g. "12.3".
seconds_since() {
  awk -v start="$1" -v end="$(now_s)" 'BEGIN { printf "%.1f", end - start }'
}

# Prints the time since $1 (from now_s) as e.g. "12.3s".
elapsed_since() {
  printf '%ss' "$(seconds_since "$1")"
}

# sha256 over the contents of every file given, in order. Used as a stamp:
# a generated artifact is rebuilt when the inputs that made it change.
hash_files() {
  cat -- "$@" | sha256sum | cut -d' ' -f1
}

# True when stamp file $1 exists and holds exactly $2.
stamp_matches() {
  [[ -f $1 ]] && [[ $(<"$1") == "$2" ]]
}

# Prints a free TCP port on 127.0.0.1. The kernel picks it; there is a small
# window before the caller binds it, which a failed start then reports.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Random URL-safe secret of 32 characters (passwords, tokens).
random_secret() {
  python3 -c 'import secrets; print(secrets.token_urlsafe(24))'
}

# Sets CLS_ENGINE (an array) to the container engine command: $ENGINE
# (default podman). Podman's default runtime, crun, refuses hosts whose
# cgroups are mounted in hybrid mode (v1 controllers beside a v2 tree);
# runc runs there, so podman uses it when the host is hybrid.
container_engine() {
  local engine=${ENGINE:-podman}
  CLS_ENGINE=("$engine")
  if [[ $engine == podman && -d /sys/fs/cgroup/unified ]] && command -v runc >/dev/null; then
    CLS_ENGINE+=(--runtime runc)
  fi
}

# An EXIT trap for scripts that start the services under $CLS_RUN_DIR:
# stops them quietly (a test runner's summary must stay the last lines) and
# removes the run dir unless the script failed, so its logs stay for reading.
stop_services_on_exit() {
  local status=$?
  "$CLS_REPO_ROOT/scripts/services.sh" stop >/dev/null 2>&1 || true
  ((status == 0)) && rm -rf "$CLS_RUN_DIR"
  exit "$status"
}
