# syntax=docker/dockerfile:1
#
# configurable-ls-backend: an MLflow ONNX model served as a Label Studio ML
# backend. Three stages:
#   builder      compiles the server (release)
#   onnxruntime  fetches libonnxruntime.so from the PyPI wheel (hash-pinned)
#   runtime      debian slim + the two files above, non-root
#
#   docker build -t configurable-ls-backend .
#   docker run -p 9090:9090 -v cls-state:/var/lib/configurable-ls-backend configurable-ls-backend
#
# linux/amd64 only: the pinned ORT wheel is x86_64.
# Lint with scripts/lint-dockerfile.sh (hadolint + COPY/.dockerignore checks).

ARG RUST_VERSION=1.95
ARG ORT_VERSION=1.31.1

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
# The whole workspace (see .dockerignore): a workspace needs every member's
# manifest to resolve, and copying all of it means a new member crate cannot
# be forgotten here.
COPY . .
# Cache mounts keep the registry and target/ between builds, so a source
# change recompiles only our crates. target/ is a mount, hence the copy out.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p configurable-ls-backend \
 && install -D -m 0755 target/release/configurable-ls-backend /out/configurable-ls-backend

FROM python:3.11-slim-bookworm AS onnxruntime
ARG ORT_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /work
# The version and wheel hash come from the same pin file scripts/setup.sh
# uses, so tests and image load the same library; --require-hashes makes pip
# refuse any other file. Only the shared library is needed: `ort` loads it at
# run time (load-dynamic), no Python involved.
COPY scripts/requirements-assets.txt .
RUN grep -E "^onnxruntime==${ORT_VERSION} " requirements-assets.txt > onnxruntime.txt \
 && pip download --quiet --no-deps --require-hashes --only-binary=:all: \
      --python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 \
      --dest wheels --requirement onnxruntime.txt \
 && python -c "import glob, zipfile; zipfile.ZipFile(glob.glob('wheels/*.whl')[0]).extract('onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}', '.')" \
 && install -D -m 0644 "onnxruntime/capi/libonnxruntime.so.${ORT_VERSION}" "/out/libonnxruntime.so.${ORT_VERSION}"

FROM debian:bookworm-slim AS runtime
ARG ORT_VERSION
# ca-certificates: HTTPS to MLflow / DagsHub / task URLs. libstdc++6: needed
# by libonnxruntime (already in the base image; listed because ORT needs it).
# Debian point releases replace these packages, so exact pins would break
# the build; the base image tag fixes the release.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid so `runAsNonRoot` and volume ownership are predictable.
RUN groupadd --system --gid 10001 cls \
 && useradd --system --uid 10001 --gid cls --home-dir /var/lib/configurable-ls-backend --no-create-home cls \
 && install -d -o cls -g cls -m 0750 /var/lib/configurable-ls-backend
COPY --from=onnxruntime /out/libonnxruntime.so.${ORT_VERSION} /opt/onnxruntime/lib/
COPY --from=builder /out/configurable-ls-backend /usr/local/bin/
ENV ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so.${ORT_VERSION}
USER 10001:10001
WORKDIR /var/lib/configurable-ls-backend
EXPOSE 9090
# Downloaded models, compiled hooks and configuration survive restarts here.
VOLUME ["/var/lib/configurable-ls-backend"]
# The binary probes itself: the image has no curl. It assumes the default
# port; change --url here if CMD's --port is changed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["configurable-ls-backend", "healthcheck", "--url", "http://127.0.0.1:9090/health"]
ENTRYPOINT ["configurable-ls-backend"]
CMD ["serve", "--host", "0.0.0.0", "--port", "9090", "--state-dir", "/var/lib/configurable-ls-backend"]
