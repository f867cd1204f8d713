# promptyard as a Hugging Face Docker Space: nginx, the API (gunicorn) and the UI (Streamlit) on port 7860.
#   docker build -t promptyard .                                  # CPU
#   docker build --build-arg VARIANT=gpu -t promptyard:gpu .      # CUDA, promptyard[gpu], llama.cpp for CUDA
# The container only wraps deploy/entrypoint.sh, which `make test` runs outside Docker.
ARG VARIANT=cpu

FROM python:3.11-slim-bookworm AS base-cpu
ENV TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PROMPTYARD_EXTRAS=ui,scale
# Debian's packages move with the point release: pinning their versions would break the build on the next one.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx curl \
    && rm -rf /var/lib/apt/lists/*

FROM nvidia/cuda:12.6.3-cudnn-devel-ubuntu22.04 AS base-gpu
ENV TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 \
    PROMPTYARD_EXTRAS=ui,scale,gpu \
    DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev nginx curl build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

# hadolint ignore=DL3006
FROM base-${VARIANT} AS app
ARG VARIANT=cpu
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Spaces run the container as uid 1000. /data exists so that a volume mounted there starts out owned by it; the
# entrypoint counts it as storage only when something is mounted on it.
RUN useradd --create-home --uid 1000 user \
    && python3 -m venv /opt/venv \
    && mkdir -p /data \
    && chown user:user /opt/venv /data
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/user \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /home/user/app
COPY --chown=user pyproject.toml README.md ./
COPY --chown=user src ./src
# The script is executable in git; COPY keeps its mode.
COPY deploy/entrypoint.sh /usr/local/bin/promptyard-entrypoint

USER 1000
# torch first from its own index: a bare `torch` from PyPI would be the (much larger) default build. The app itself
# is this checkout; its dependencies' bounds live in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install --index-url "$TORCH_INDEX_URL" torch==2.13.0 \
    && pip install ".[${PROMPTYARD_EXTRAS}]" \
    && if [ "$VARIANT" = "gpu" ]; then \
         CMAKE_ARGS="-DGGML_CUDA=on" pip install llama-cpp-python==0.3.36 \
         || echo "llama-cpp-python could not be built for CUDA here; GGUF models stay unavailable"; \
       fi

# Public bind (auth on), the Space's port, data under /data when a storage bucket is mounted there.
# Secrets come from the Space's settings as environment variables: PROMPTYARD_ADMIN_KEY, HF_TOKEN, DATABASE_URL,
# REDIS_URL; none is baked into the image.
ENV PORT=7860 \
    PROMPTYARD_HOST=0.0.0.0 \
    PROMPTYARD_DATA_DIR=/data \
    PROMPTYARD_LOG_FORMAT=json
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS \"http://127.0.0.1:${PORT}/healthz\" || exit 1"]
ENTRYPOINT ["/usr/local/bin/promptyard-entrypoint"]
