# Sourced by the scripts: sets FLOVER_MODELS_DIR to the folder holding stories260K/.
# Order: $FLOVER_MODELS_DIR, ../shared/models beside the repository, ./models (filled
# by scripts/download-models.sh when nothing else has the files, unless
# FLOVER_MODELS_OPTIONAL is set: scripts/fuzz.sh only takes extra seeds from them).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${FLOVER_MODELS_DIR:-}" ]; then
  if [ -f "$root/../shared/models/stories260K/stories260K.bin" ]; then
    FLOVER_MODELS_DIR="$(cd "$root/../shared/models" && pwd)"
  else
    FLOVER_MODELS_DIR="$root/models"
    [ -f "$FLOVER_MODELS_DIR/stories260K/stories260K.bin" ] || [ -n "${FLOVER_MODELS_OPTIONAL:-}" ] ||
      bash "$root/scripts/download-models.sh" --dest "$FLOVER_MODELS_DIR" stories260k
  fi
fi
export FLOVER_MODELS_DIR
