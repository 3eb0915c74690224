#!/usr/bin/env bash
# Makes the CURVE keys of configs/local-curve.yaml (docs/security.md) with flover keygen:
#   DIR/coordinator.{key,pub}     the coordinator's key pair and public key
#   DIR/workers/worker.{key,pub}  the workers' key pair (flover up gives it to them)
#   DIR/admins/up.{key,pub}       flover up's and flover bench's own client: an admin
#   DIR/clients/alice.{key,pub}   a client
# Usage: bash scripts/make-keys.sh [DIR] [--flover PATH]   (DIR: ./keys; flover: ./build/client/flover)
# Existing key files are never overwritten: flover keygen refuses, and so does this script.
set -euo pipefail
dir=keys
flover=./build/client/flover
while [ $# -gt 0 ]; do
  case "$1" in
    --flover) flover="$2"; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) dir="$1"; shift ;;
  esac
done
for name in coordinator workers/worker admins/up clients/alice; do
  "$flover" keygen --out "$dir/$name"
done
