#!/usr/bin/env bash
# Downloads the stories260K test model (Karpathy's tinyllamas, MIT) from Hugging Face:
#   scripts/download-models.sh [DIR]     (default DIR: ./models)
# puts stories260K.bin and tok512.bin into DIR/stories260K/ and checks their sha256
# against the values in the models README. Files already present with the right sum are
# kept; a file with a wrong sum is downloaded again. Exits non-zero, saying why, when a
# download or a check fails (nothing half-written is left under the final name).
# stories260K.gguf is not downloaded: it was made from these two files (see the README).
set -euo pipefail

dest="${1:-./models}/stories260K"
base="https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K"
files=(
  "stories260K.bin b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696"
  "tok512.bin 037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312"
)

die() {
  echo "download-models: $*" >&2
  exit 1
}

command -v curl >/dev/null || die "curl is not installed (apt-get install curl)"
command -v sha256sum >/dev/null || die "sha256sum is not installed (coreutils)"
mkdir -p "$dest" || die "cannot create $dest"

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

for entry in "${files[@]}"; do
  read -r name want <<<"$entry"
  path="$dest/$name"
  if [ -f "$path" ]; then
    have="$(sha256_of "$path")"
    if [ "$have" = "$want" ]; then
      echo "download-models: $path present, sha256 ok"
      continue
    fi
    echo "download-models: $path has sha256 $have, expected $want; downloading it again"
  fi
  tmp="$path.part"
  echo "download-models: $base/$name -> $path"
  if ! curl --fail --location --silent --show-error --retry 3 --connect-timeout 20 \
      --output "$tmp" "$base/$name"; then
    rm -f "$tmp"
    die "downloading $base/$name failed (no network? behind a proxy? set https_proxy)"
  fi
  have="$(sha256_of "$tmp")"
  if [ "$have" != "$want" ]; then
    rm -f "$tmp"
    die "$base/$name has sha256 $have, expected $want; not installing it"
  fi
  mv -f "$tmp" "$path"
done
echo "download-models: done; models in $(cd "$dest/.." && pwd) (export FLOVER_MODELS_DIR=that folder)"
