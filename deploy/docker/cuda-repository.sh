#!/usr/bin/env bash
# Adds NVIDIA's CUDA apt repository for Debian 12 (its signing key from the cuda-keyring
# package) and updates the package lists. Run as root, on Debian 12 with curl.
set -euo pipefail
keyring=cuda-keyring_1.1-1_all.deb
curl -fsSL -o "/tmp/$keyring" "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/$keyring"
dpkg -i "/tmp/$keyring"
rm -f "/tmp/$keyring"
apt-get update
