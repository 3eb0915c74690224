#!/usr/bin/env bash
# Creates the Python environment of the HTTP tests and tools: a venv on Debian's
# python3 that also sees its packages (python3-zmq, python3-protobuf,
# python3-prometheus-client, installed by scripts/install-deps.sh), plus the `openai`
# package from PyPI, at a pinned version. Idempotent: an existing environment with the
# package is kept.
# Usage: scripts/python-env.sh [DIR]   (default: build/venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-build/venv}
openai_version=3.60.0

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import openai, sys; sys.exit(openai.__version__ != '$openai_version')" 2>/dev/null; then
  echo "python-env: $venv ready (openai $openai_version)"
  exit 0
fi
rm -rf "$venv"
/usr/bin/python3 -m venv --system-site-packages "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "openai==$openai_version"
echo "python-env: $venv created (openai $openai_version)"
