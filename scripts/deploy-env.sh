#!/usr/bin/env bash
# Creates the Python environment of the deployment checks (tests/deploy): a venv with
# scripts/requirements-deploy.txt from PyPI (kubernetes-validate with Kubernetes' JSON
# schemas, hadolint). Only this step uses the network; the checks run offline.
# Idempotent: an environment that has the pinned packages is kept.
# Usage: scripts/deploy-env.sh [DIR]   (default: build/deploy-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-build/deploy-venv}
requirements=scripts/requirements-deploy.txt
stamp="$venv/requirements-deploy.txt"

if [ -x "$venv/bin/python" ] && cmp -s "$requirements" "$stamp"; then
  echo "deploy-env: $venv ready"
  exit 0
fi
rm -rf "$venv"
/usr/bin/python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$requirements"
"$venv/bin/python" -c 'import kubernetes_validate, yaml' && "$venv/bin/hadolint" --version
cp "$requirements" "$stamp"
echo "deploy-env: $venv created"
