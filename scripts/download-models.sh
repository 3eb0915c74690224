#!/usr/bin/env bash
# Downloads models Flover serves from their public source, checked (scripts/download_models.py
# has the details):
#   scripts/download-models.sh [--dest DIR] [--revision REV] [NAME ...]   (default: stories260k)
#   scripts/download-models.sh --list
# Models go into DIR/<folder>/ (default DIR ./models). Exits non-zero, saying why, when a
# download or a checksum fails; nothing half-written is left under a final name.
set -euo pipefail
command -v python3 >/dev/null || { echo "download-models: python3 is not installed (apt-get install python3)" >&2; exit 1; }
exec python3 "$(dirname "$0")/download_models.py" "$@"
