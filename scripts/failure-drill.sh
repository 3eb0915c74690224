#!/usr/bin/env bash
# Failure drills: start the cluster of a config under `flover up` (default
# configs/local.yaml), break something, and report what a user sees and when.
#
#   scripts/failure-drill.sh [--scenario S] [--config FILE] [--rank R] [--max-tokens N] [--bin-dir DIR]
#
# Scenarios:
#   worker       (default) SIGKILL worker 0/R at the first token of a long streamed
#                request: when the request finished, when the replica was ready again,
#                and whether the text equals a run without the failure.
#   idle-worker  SIGKILL worker 0/R while nothing runs: when the replica was unhealthy,
#                and when it was ready again.
#   client       SIGKILL a client with two long requests in flight: when the
#                coordinator had cancelled them and freed their KV blocks.
#   coordinator  SIGKILL the coordinator at the first token of a request: when the
#                client reported it, and what it said (flover up then stops).
#
# Needs a build (scripts/build.sh). Exits 0 when the drill went as expected.
set -euo pipefail
cd "$(dirname "$0")/.."
scenario=worker config=configs/local.yaml rank=1 max_tokens=480 bin_dir="$PWD/build/client"
while (($#)); do
  case "$1" in
    --scenario) scenario=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --rank) rank=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    *) echo "failure-drill: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$scenario" in worker|idle-worker|client|coordinator) ;; *)
  echo "failure-drill: --scenario is one of worker, idle-worker, client, coordinator" >&2; exit 2 ;;
esac
source scripts/models-dir.sh
flover="$bin_dir/flover"
[ -x "$flover" ] || { echo "failure-drill: no $flover; run scripts/build.sh first" >&2; exit 2; }
work=$(mktemp -d /tmp/flover-drill-XXXXXX)
trap 'rm -rf "$work"' EXIT

# The drill runs under `flover up --exec` (exec'd, so that $PPID is flover up, the
# daemons' parent). Times are in seconds, from `date +%s.%N`.
cat > "$work/drill.sh" <<EOF
set -eu
seconds() { awk -v a="\$1" -v b="\$2" 'BEGIN { printf "%.3f", b - a }'; }  # from \$1 to \$2
since() { seconds "\$1" "\$(date +%s.%N)"; }
# until_ WHAT CMD...: runs CMD until it succeeds; gives up after 30 s.
until_() {
  what=\$1; shift; t=\$(date +%s.%N)
  until "\$@" > /dev/null 2>&1; do
    [ "\$(since \$t | cut -d. -f1)" -lt 30 ] || { echo "failure-drill: no \$what after 30 s" >&2; exit 1; }
    sleep 0.002
  done
}
story="$flover generate --prompt 'Once upon a time' --max-tokens $max_tokens --ignore-eos"
worker=\$(pgrep -P \$PPID -f -- "flover-worker .*--replica 0 --rank $rank( |\$)")
case $scenario in
worker)
  eval "\$story" > "$work/reference.txt"
  t0=\$(date +%s.%N)
  eval "\$story" > "$work/survivor.txt" &
  survivor=\$!
  until_ "first token" test -s "$work/survivor.txt"
  tk=\$(date +%s.%N)
  kill -9 \$worker
  wait \$survivor
  echo "killed worker 0/$rank (pid \$worker) \$(seconds \$t0 \$tk) s into the request"
  echo "request finished \$(since \$tk) s after the kill"
  $flover status --wait-ready 120 > /dev/null
  echo "replica ready \$(since \$tk) s after the kill"
  if cmp -s "$work/reference.txt" "$work/survivor.txt"; then
    echo "text: the same as without the failure (\$(wc -c < "$work/reference.txt") bytes)"
  else
    echo "text: DIFFERENT from the reference"; diff "$work/reference.txt" "$work/survivor.txt" | head -5; exit 1
  fi
  ;;
idle-worker)
  tk=\$(date +%s.%N)
  kill -9 \$worker
  until_ "unhealthy replica" sh -c "$flover status | grep -q unhealthy"
  echo "replica unhealthy \$(since \$tk) s after the kill"
  $flover status --wait-ready 120 > /dev/null
  echo "replica ready \$(since \$tk) s after the kill"
  ;;
client)
  $flover generate --max-tokens $max_tokens --ignore-eos --prompt 'Once upon a time' --prompt 'Lily' > /dev/null &
  client=\$!
  until_ "two running requests (raise --max-tokens?)" sh -c "$flover status | grep -q 'running 2'"
  tk=\$(date +%s.%N)
  kill -9 \$client
  until_ "cancellation" sh -c "$flover status | grep -q 'cancelled as their client left'"
  echo "requests cancelled \$(since \$tk) s after the client was killed"
  $flover status | grep -E 'cancelled as their client left|replica 0:' | sed 's/^ *//'
  ;;
coordinator)
  coordinator=\$(pgrep -P \$PPID -f flover-coordinator)
  eval "\$story" > "$work/out.txt" 2> "$work/err.txt" &
  client=\$!
  until_ "first token" test -s "$work/out.txt"
  tk=\$(date +%s.%N)
  # flover up stops this drill (SIGTERM, then SIGKILL after 2 s) as soon as it sees the
  # coordinator die, which may be before the client has reported: finish first.
  trap '' TERM
  kill -9 \$coordinator
  code=0; wait \$client || code=\$?
  echo "client exited \$code \$(since \$tk) s after the kill: \$(cat "$work/err.txt")"
  [ \$code -ne 0 ]
  ;;
esac
EOF
status=0
"$flover" up --config "$config" --exec "exec sh $work/drill.sh" > "$work/up.log" 2>&1 || status=$?
# The drill's own lines (the daemons' logs start with "[") and what flover up did.
grep -v '^\[' "$work/up.log" | grep -Ev "^flover up: ([0-9]+/[0-9]+ workers ready|cluster '|stopping|stopped)" || true
# The coordinator drill ends flover up with the coordinator (exit 1); the others with the drill's code.
if [ "$scenario" = coordinator ]; then
  grep -q "client exited [1-9]" "$work/up.log"
else
  exit $status
fi
