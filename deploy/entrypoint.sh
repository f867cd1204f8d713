#!/usr/bin/env bash
# The container's entry point (and what the tests start): pick where data lives, then run the single-port unit.
#
#   PORT                   public port (7860, the Space's app_port)
#   PROMPTYARD_HOST        interface to listen on (0.0.0.0: auth is on)
#   PROMPTYARD_DATA_DIR    persistent storage (/data, where a Space mounts its storage bucket)
#   PROMPTYARD_DATA_PERSISTENT  auto (persistent when the folder is a mount point), yes or no
#   PROMPTYARD_WORKERS     gunicorn worker processes (each loads its own models)
#   PROMPTYARD_THREADS     request threads per worker
# Secrets come from the environment as they are: PROMPTYARD_ADMIN_KEY, HF_TOKEN, DATABASE_URL, REDIS_URL.
set -euo pipefail

data_dir="${PROMPTYARD_DATA_DIR:-/data}"

# The image has an empty /data of its own (so that a volume mounted there starts out owned by uid 1000): only a
# mount on it is storage that outlives the container.
is_mount_point() {
  awk -v dir="$1" '$2 == dir { found = 1 } END { exit !found }' /proc/mounts 2>/dev/null
}
persistent=no
if [ -d "$data_dir" ] && [ -w "$data_dir" ]; then
  case "${PROMPTYARD_DATA_PERSISTENT:-auto}" in
    yes) persistent=yes ;;
    no) ;;
    *) if is_mount_point "$data_dir"; then persistent=yes; fi ;;
  esac
fi

if [ "$persistent" = yes ]; then
  export PROMPTYARD_HOME="${PROMPTYARD_HOME:-$data_dir/promptyard}"
  export HF_HOME="${HF_HOME:-$data_dir/huggingface}"
  unset PROMPTYARD_STORAGE_EPHEMERAL
  echo "promptyard: data under $data_dir (database, keys, model cache)" >&2
else
  export PROMPTYARD_HOME="${PROMPTYARD_HOME:-${HOME:-/tmp}/promptyard}"
  export PROMPTYARD_STORAGE_EPHEMERAL=1
  echo "promptyard: WARNING: no persistent storage mounted at $data_dir; storage is EPHEMERAL: the database, API keys" \
       "and downloaded models are lost when the container restarts. Mount persistent storage at $data_dir." >&2
fi
mkdir -p "$PROMPTYARD_HOME"

if [ -z "${PROMPTYARD_ADMIN_KEY:-}" ]; then
  echo "promptyard: WARNING: PROMPTYARD_ADMIN_KEY is not set: auth is on and no key can be used until one is" \
       "created. Set it as a secret (Space settings) to sign in as admin." >&2
fi
if [ -n "${DATABASE_URL:-}" ]; then
  echo "promptyard: database from DATABASE_URL" >&2
fi

exec "${PROMPTYARD_BIN:-promptyard}" up \
  --single-port "${PORT:-7860}" \
  --host "${PROMPTYARD_HOST:-0.0.0.0}" \
  --workers "${PROMPTYARD_WORKERS:-1}" \
  --threads "${PROMPTYARD_THREADS:-16}"
