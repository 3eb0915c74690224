#!/usr/bin/env bash
# Prints the Debian packages that hold the shared libraries the given binaries load
# (ldd, then dpkg -S on each library's path, or on the file its symlinks lead to), one
# a line. The image's build stage runs it on the installed daemons; its runtime stage
# installs what it printed, so the runtime libraries follow what the build linked.
# Fails when a library is not found (except the GPU driver's libcuda, which the NVIDIA
# container runtime mounts) or belongs to no package (a library built by hand would be
# missing from the image).
# Usage: runtime-packages.sh BINARY...
set -euo pipefail
linked=$(for binary in "$@"; do ldd "$binary"; done)
if missing=$(grep 'not found' <<<"$linked" | grep -v 'libcuda\.so'); then
  echo "runtime-packages: libraries not found: $missing" >&2
  exit 1
fi
libraries=$(awk '/=> \// {print $3}' <<<"$linked" | sort -u)
for library in $libraries; do
  owner=$({ dpkg -S "$library" 2>/dev/null || dpkg -S "$(readlink -f "$library")" 2>/dev/null; } | head -n 1) || true
  [ -n "$owner" ] || {
    echo "runtime-packages: $library belongs to no Debian package" >&2
    exit 1
  }
  owner=${owner%%:*}
  echo "${owner%%,*}"
done | sort -u
