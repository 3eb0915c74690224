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
#                client reported it, and what it said; flover up then stops the
#                workers and exits 1.
#
# The drill's commands run as `flover up --exec`, except the coordinator drill's: when
# its coordinator stops, flover up stops everything it started, an --exec command
# included, so that drill's client and report run beside flover up instead.
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
up_pid=  # flover up, while it runs beside the drill
cleanup() {
  [ -z "$up_pid" ] || kill "$up_pid" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The drill's commands, run by flover up --exec (exec'd, so that $PPID is flover up, the
# daemons' parent) or beside it with $up_pid set. Times are in seconds, from
# `date +%s.%N`.
cat > "$work/drill.sh" <<EOF
set -eu
up=\${up_pid:-\$PPID}
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
worker=\$(pgrep -P \$up -f -- "flover-worker .*--replica 0 --rank $rank( |\$)")
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
  coordinator=\$(pgrep -P \$up -f flover-coordinator)
  eval "\$story" > "$work/out.txt" 2> "$work/err.txt" &
  client=\$!
  until_ "first token" test -s "$work/out.txt"
  tk=\$(date +%s.%N)
  kill -9 \$coordinator
  code=0; wait \$client || code=\$?
  echo "client exited \$code \$(since \$tk) s after the kill: \$(cat "$work/err.txt")"
  [ \$code -ne 0 ]
  ;;
esac
EOF
# The drill's own lines (the daemons' logs start with "[") and what flover up did.
report_up_log() {
  grep -v '^\[' "$work/up.log" | grep -Ev "^flover up: ([0-9]+/[0-9]+ workers ready|cluster '|stopping|stopped)" || true
}
if [ "$scenario" != coordinator ]; then
  status=0
  "$flover" up --config "$config" --exec "exec sh $work/drill.sh" > "$work/up.log" 2>&1 || status=$?
  report_up_log
  exit $status
fi
# The coordinator drill: flover up in the background; its client endpoint from its
# "ready" line (if flover up stops first, it says why: --ready-timeout bounds the wait).
"$flover" up --config "$config" > "$work/up.log" 2>&1 &
up_pid=$!
endpoint=
until [ -n "$endpoint" ]; do
  if ! kill -0 "$up_pid" 2> /dev/null; then
    report_up_log
    echo "failure-drill: flover up stopped before the cluster was ready" >&2
    exit 1
  fi
  sleep 0.05
  endpoint=$(sed -n "s/^flover up: cluster '.*' ready: client endpoint \([^ ]*\) .*/\1/p" "$work/up.log")
done
status=0
up_pid=$up_pid FLOVER_ENDPOINT=$endpoint sh "$work/drill.sh" || status=$?
[ $status -eq 0 ] || kill "$up_pid" 2> /dev/null || true  # the coordinator may still run
up_status=0
wait "$up_pid" || up_status=$?
up_pid=
report_up_log
[ $status -eq 0 ] || exit $status
# flover up stops with its coordinator, non-zero.
[ $up_status -ne 0 ] || { echo "failure-drill: flover up exited 0 after its coordinator was killed" >&2; exit 1; }
