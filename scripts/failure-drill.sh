#!/usr/bin/env bash
# Failure drill: starts the cluster of a config under `flover up` (default
# configs/local.yaml), runs one long streamed request to its end as the reference, runs
# it again and SIGKILLs a worker at its first token, then reports whether the request
# still finished with the reference's text, how long it took after the kill, and when
# the replica was ready again.
#
#   scripts/failure-drill.sh [--config FILE] [--rank R] [--max-tokens N] [--bin-dir DIR]
#
# Needs a build (scripts/build.sh). Exits 0 when the text survived, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
config=configs/local.yaml rank=1 max_tokens=480 bin_dir="$PWD/build/client"
while (($#)); do
  case "$1" in
    --config) config=$2; shift 2 ;;
    --rank) rank=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    *) echo "failure-drill: unknown argument $1" >&2; exit 2 ;;
  esac
done
source scripts/models-dir.sh
flover="$bin_dir/flover"
[ -x "$flover" ] || { echo "failure-drill: no $flover; run scripts/build.sh first" >&2; exit 2; }
work=$(mktemp -d /tmp/flover-drill-XXXXXX)
trap 'rm -rf "$work"' EXIT

# Run by `flover up --exec` (exec'd, so that $PPID is flover up, the workers' parent).
cat > "$work/drill.sh" <<EOF
set -eu
story="$flover generate --prompt 'Once upon a time' --max-tokens $max_tokens --ignore-eos"
eval "\$story" > "$work/reference.txt"
victim=\$(pgrep -P \$PPID -f -- "flover-worker .*--replica 0 --rank $rank( |\$)")
t0=\$(date +%s.%N)
eval "\$story" > "$work/survivor.txt" &
survivor=\$!
until [ -s "$work/survivor.txt" ]; do sleep 0.005; done
tk=\$(date +%s.%N)
kill -9 \$victim
wait \$survivor
t1=\$(date +%s.%N)
$flover status --wait-ready 120 > /dev/null
t2=\$(date +%s.%N)
echo "killed worker 0/$rank (pid \$victim) \$(echo "\$tk - \$t0" | bc) s into the request"
echo "request finished \$(echo "\$t1 - \$tk" | bc) s after the kill; replica ready \$(echo "\$t2 - \$tk" | bc) s after it"
if cmp -s "$work/reference.txt" "$work/survivor.txt"; then
  echo "text: the same as without the failure (\$(wc -c < "$work/reference.txt") bytes)"
else
  echo "text: DIFFERENT from the reference"; diff "$work/reference.txt" "$work/survivor.txt" | head -5; exit 1
fi
$flover status | head -1
EOF
"$flover" up --config "$config" --exec "exec sh $work/drill.sh" 2>&1 |
  grep -E "^flover up: flover-worker|killed worker|request finished|^text:|moved from|waits for|moves from|^  [<>]"
