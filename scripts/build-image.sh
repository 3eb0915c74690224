#!/usr/bin/env bash
# Builds Flover's container image from deploy/docker (the repository root as context):
#   scripts/build-image.sh [cpu|cuda] [TAG]   (default: cpu; TAG flover:VERSION or flover-cuda:VERSION)
# With docker when its daemon answers, else with buildah (Debian 12: apt-get install
# buildah), which needs no daemon: as root in a container or VM it runs with --isolation
# chroot and the vfs storage driver (no overlay mounts there), in Docker's image format
# (which keeps the Dockerfiles' SHELL). It compiles the whole project in the image's
# build stage: tens of minutes on two cores. Not part of the test suite; CTest runs it
# only in a build configured with -DFLOVER_IMAGE_TESTS=ON (label `image`).
set -euo pipefail
cd "$(dirname "$0")/.."
variant=${1:-cpu}
version=$(sed -n 's/^project(flover VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
case "$variant" in
  cpu) dockerfile=deploy/docker/Dockerfile tag=${2:-flover:$version} ;;
  cuda) dockerfile=deploy/docker/Dockerfile.cuda tag=${2:-flover-cuda:$version} ;;
  *) echo "usage: $0 [cpu|cuda] [TAG]" >&2; exit 2 ;;
esac
start=$SECONDS
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  docker build -f "$dockerfile" -t "$tag" .
elif command -v buildah >/dev/null 2>&1; then
  buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-vfs}" bud --isolation "${BUILDAH_ISOLATION:-chroot}" --format docker \
    --layers -f "$dockerfile" -t "$tag" .
else
  echo "build-image: neither docker nor buildah is installed (apt-get install buildah)" >&2
  exit 1
fi
echo "build-image: $tag built from $dockerfile in $((SECONDS - start)) s"
