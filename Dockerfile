# syntax=docker/dockerfile:1
#
# configurable-ls-backend: an MLflow ONNX model served as a Label Studio ML
# backend. Stages:
#   builder          compiles the server (release), strips it, keeps its
#                    debug info in a separate file
#   onnxruntime      libonnxruntime.so from the PyPI wheel (hash-pinned)
#   onnxruntime-gpu  its CUDA build and the CUDA/cuDNN libraries (PyPI wheels)
#   debug-symbols    only the debug file: `--target debug-symbols --output DIR`
#   base             debian slim + the binary, non-root; what both images share
#   runtime-gpu      base + the GPU libraries: `--target runtime-gpu`
#   runtime          base + ONNX Runtime for the CPU (the default image)
#
#   docker build -t configurable-ls-backend .
#   docker run -d -p 9090:9090 -v cls-state:/var/lib/configurable-ls-backend \
#     -e ADMIN_TOKEN=... configurable-ls-backend
#
# scripts/test-image.sh builds this file and checks the image as a user
# would use it.
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
# The debug info (line tables) goes to a separate file, linked by
# .gnu_debuglink, so the image carries a stripped binary and a crash can
# still be symbolised with the file from the debug-symbols stage.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p configurable-ls-backend \
 && install -D -m 0755 target/release/configurable-ls-backend /out/configurable-ls-backend \
 && objcopy --only-keep-debug /out/configurable-ls-backend /out/configurable-ls-backend.debug \
 && strip --strip-all /out/configurable-ls-backend \
 && objcopy --add-gnu-debuglink=/out/configurable-ls-backend.debug /out/configurable-ls-backend

# ONNX Runtime's shared libraries, from PyPI wheels pinned by hash in the
# same files scripts/setup.sh uses, so tests and image load the same
# library; --require-hashes makes pip refuse any other file. Only the shared
# libraries are taken (scripts/py/ort_libs.py): `ort` loads them at run time
# (load-dynamic), no Python involved.
FROM python:3.11-slim-bookworm AS onnxruntime
ARG ORT_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
WORKDIR /work
COPY scripts/requirements-assets.txt scripts/py/ort_libs.py ./
RUN grep -E "^onnxruntime==${ORT_VERSION} " requirements-assets.txt > onnxruntime.txt \
 && pip download --quiet --no-deps --require-hashes --only-binary=:all: \
      --python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 \
      --dest wheels --requirement onnxruntime.txt \
 && python ort_libs.py wheels /out \
 && test -f "/out/libonnxruntime.so.${ORT_VERSION}"

# The CUDA build of the same version and the CUDA 13 / cuDNN 9 runtime
# libraries it loads (about 2 GB), for the runtime-gpu target only.
FROM python:3.11-slim-bookworm AS onnxruntime-gpu
ARG ORT_VERSION
WORKDIR /work
COPY scripts/requirements-gpu.txt scripts/py/ort_libs.py ./
RUN pip download --quiet --no-deps --require-hashes --only-binary=:all: \
      --python-version 3.11 --implementation cp --abi cp311 \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
      --platform manylinux_2_17_x86_64 --platform manylinux_2_12_x86_64 \
      --platform manylinux_2_5_x86_64 \
      --dest wheels --requirement requirements-gpu.txt \
 && python ort_libs.py wheels /out \
 && test -f "/out/libonnxruntime.so.${ORT_VERSION}" \
 && test -f /out/libonnxruntime_providers_cuda.so \
 && rm -rf wheels

FROM scratch AS debug-symbols
COPY --from=builder /out/configurable-ls-backend.debug /

# What both images share: the OS layer, the user, the binary, and how the
# server runs.
FROM debian:bookworm-slim AS base
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="configurable-ls-backend" \
      org.opencontainers.image.description="Any MLflow ONNX model as a Label Studio ML backend, shaped by WebAssembly hooks" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
# ca-certificates: HTTPS to MLflow / DagsHub / task URLs. libstdc++6: needed
# by libonnxruntime (already in the base image; listed because ORT needs it).
# Debian point releases replace these packages, so exact pins would break
# the build; the base image tag fixes the release. No package lists, caches
# or archives stay in the layer, whatever the base's apt configuration.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log
# A fixed numeric uid so `runAsNonRoot` and volume ownership are predictable.
RUN groupadd --system --gid 10001 cls \
 && useradd --system --uid 10001 --gid cls --home-dir /var/lib/configurable-ls-backend --no-create-home cls \
 && install -d -o cls -g cls -m 0750 /var/lib/configurable-ls-backend
COPY --from=builder /out/configurable-ls-backend /usr/local/bin/
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

# GPU image: `--target runtime-gpu`. Every model runs on CUDA; without a
# visible GPU the server says so at start-up and falls back to the CPU.
FROM base AS runtime-gpu
ARG ORT_VERSION
COPY --from=onnxruntime-gpu /out/ /opt/onnxruntime/lib/
ENV ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so.${ORT_VERSION} \
    LD_LIBRARY_PATH=/opt/onnxruntime/lib \
    CLS_EXECUTION_PROVIDER=cuda

# The default image (last stage): CPU.
FROM base AS runtime
ARG ORT_VERSION
COPY --from=onnxruntime /out/ /opt/onnxruntime/lib/
ENV ORT_DYLIB_PATH=/opt/onnxruntime/lib/libonnxruntime.so.${ORT_VERSION}
