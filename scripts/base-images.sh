#!/usr/bin/env bash
# Makes sure the three base images the Dockerfile starts FROM are present:
#
#   debian:bookworm-slim         the runtime stage
#   python:3.11-slim-bookworm    the stage that fetches ONNX Runtime's wheel
#   rust:<RUST_VERSION>-slim-bookworm   the builder
#
# An image already present is kept. A missing one is pulled from its
# registry; when no registry can be reached (an air-gapped build machine
# that still reaches Debian's archive), it is made locally instead, under the
# same name, from the Debian archive:
#
#   debian   debootstrap --variant=minbase bookworm, apt configured like the
#            official slim image (no package caches left in layers)
#   python   debian + python3 (3.11, bookworm's), pip, venv, `python`
#   rust     debian + gcc, libc6-dev, pkg-config + the Rust toolchain
#            RUST_VERSION from this machine's rustup (installed if missing)
#
# Each local image trusts the CAs this machine trusts, so pip and cargo in a
# build reach the registries as the host does. Builds then need
# `--network host`.
#
# Usage: scripts/base-images.sh            (podman; ENGINE=docker for docker)
# Env:   RUST_VERSION (1.95), FORCE_LOCAL=1 (skip the pull, make them here)
# Needs root for debootstrap when an image must be made (about 3 minutes).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ENGINE=${ENGINE:-podman}
container_engine
RUST_VERSION=${RUST_VERSION:-1.95}
FORCE_LOCAL=${FORCE_LOCAL:-0}
readonly ENGINE RUST_VERSION FORCE_LOCAL
readonly DEBIAN=docker.io/library/debian:bookworm-slim
readonly PYTHON=docker.io/library/python:3.11-slim-bookworm
readonly RUST=docker.io/library/rust:$RUST_VERSION-slim-bookworm

have_image() {
  "${CLS_ENGINE[@]}" image inspect "$1" >/dev/null 2>&1
}

# Pulls $1 unless FORCE_LOCAL; false when no registry answers.
try_pull() {
  [[ $FORCE_LOCAL == 1 ]] && return 1
  timeout 120 "${CLS_ENGINE[@]}" pull --quiet "$1" >/dev/null 2>&1
}

# The first Debian archive URL in apt's sources (deb822 or one-line form).
debian_mirror() {
  local mirror
  mirror=$(grep -h -m1 -E '^URIs: .*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '{print $2}' || true)
  [[ -n $mirror ]] ||
    mirror=$(grep -h -m1 -E '^deb .*/debian/? ' /etc/apt/sources.list 2>/dev/null |
      awk '{print $2}' || true)
  printf '%s\n' "${mirror:-http://deb.debian.org/debian}"
}

ensure_debootstrap() {
  command -v debootstrap >/dev/null && return
  log "installing debootstrap"
  apt-get install -y -qq debootstrap >/dev/null
}

make_debian() {
  local rootfs
  ensure_debootstrap
  rootfs=$(mktemp -d /var/tmp/cls-rootfs.XXXXXX)
  log "making $DEBIAN from the Debian archive (debootstrap, ~2 minutes)"
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$(debian_mirror)" \
    >"$rootfs.log" 2>&1; then
    tail -n 5 "$rootfs.log" >&2
    die "debootstrap failed (log: $rootfs.log)"
  fi
  # What the official slim image configures: apt keeps no .deb files and no
  # package caches, so an `apt-get install` layer holds only the packages.
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/info/*
EOF
  rm -rf "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  trust_host_cas "$rootfs"
  tar -C "$rootfs" -c . | "${CLS_ENGINE[@]}" import --quiet --change 'CMD ["bash"]' - "$DEBIAN" >/dev/null
  rm -rf "$rootfs" "$rootfs.log"
}

# Copies this machine's CA bundle (and its extra CAs, so
# update-ca-certificates inside keeps them) into the root fs $1.
trust_host_cas() {
  local rootfs=$1
  mkdir -p "$rootfs/usr/local/share/ca-certificates" "$rootfs/etc/ssl/certs"
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
  fi
  [[ -f /etc/ssl/certs/ca-certificates.crt ]] &&
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
  return 0
}

# Builds image $1 from the Containerfile on stdin, in context dir $2.
build_from_stdin() {
  local name=$1 context=$2
  cat >"$context/Containerfile"
  "${CLS_ENGINE[@]}" build --network host --quiet --tag "$name" --file "$context/Containerfile" \
    "$context" >/dev/null
}

make_python() {
  local context
  context=$(mktemp -d)
  log "making $PYTHON on $DEBIAN"
  build_from_stdin "$PYTHON" "$context" <<EOF
FROM $DEBIAN
RUN apt-get update \\
 && apt-get install -y --no-install-recommends python3 python3-pip python3-venv python-is-python3 ca-certificates \\
 && update-ca-certificates >/dev/null \\
 && rm -rf /var/lib/apt/lists/* /usr/lib/python3*/EXTERNALLY-MANAGED
CMD ["python3"]
EOF
  rm -rf "$context"
}

# The sysroot of rustup's RUST_VERSION toolchain, installed if missing.
rust_toolchain() {
  command -v rustup >/dev/null || die "rustup is needed to make $RUST (https://rustup.rs)"
  if ! rustup run "$RUST_VERSION" rustc --version >/dev/null 2>&1; then
    log "installing Rust $RUST_VERSION (rustup, minimal profile)"
    rustup toolchain install "$RUST_VERSION" --profile minimal >/dev/null
  fi
  rustup run "$RUST_VERSION" rustc --print sysroot
}

make_rust() {
  local context sysroot
  sysroot=$(rust_toolchain)
  context=$(mktemp -d)
  log "making $RUST on $DEBIAN with $(rustup run "$RUST_VERSION" rustc --version)"
  mkdir "$context/toolchain"
  # Without its documentation, which is most of a toolchain's size.
  tar -C "$sysroot" --exclude=./share/doc -c . | tar -C "$context/toolchain" -x
  build_from_stdin "$RUST" "$context" <<EOF
FROM $DEBIAN
RUN apt-get update \\
 && apt-get install -y --no-install-recommends gcc libc6-dev pkg-config ca-certificates \\
 && update-ca-certificates >/dev/null \\
 && rm -rf /var/lib/apt/lists/*
COPY toolchain /usr/local/rust
ENV CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/rust/bin:\$PATH
RUN mkdir -p /usr/local/cargo/bin && cargo --version
EOF
  rm -rf "$context"
}

ensure() {
  local name=$1 make=$2
  if have_image "$name"; then
    log "$name: present"
  elif try_pull "$name"; then
    log "$name: pulled"
  else
    "$make"
  fi
}

main() {
  command -v "$ENGINE" >/dev/null ||
    die "$ENGINE is not installed (scripts/test-image.sh installs podman)"
  log "engine: ${CLS_ENGINE[*]}"
  local started
  started=$(now_s)
  ensure "$DEBIAN" make_debian
  ensure "$PYTHON" make_python
  ensure "$RUST" make_rust
  log "base images ready in $(elapsed_since "$started")"
}

main "$@"
