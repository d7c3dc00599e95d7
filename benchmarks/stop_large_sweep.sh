#!/usr/bin/env bash
# Stop a sampled sweep of N planned trials (default 100,000) by SIGINT once 5 have
# started, and print how long the stop took and how much it printed (issue #29: before,
# 41 s and 102,266 lines). Run from the repo root with aeff installed:
#   bash benchmarks/stop_large_sweep.sh [N]
set -uo pipefail
n="${1:-100000}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python -m aeff -m 'hparams.lr=tag(log, interval(1e-4,1e-2))' "search.num_trials=$n" \
  debug=short "hydra.sweep.dir=$work/s" > "$work/out.log" 2>&1 &
pid=$!
start=$(date +%s.%N)
until [ "$(find "$work/s" -maxdepth 1 -name '[0-9]*' 2>/dev/null | wc -l)" -ge 5 ]; do
  kill -0 "$pid" 2>/dev/null || { tail -5 "$work/out.log"; exit 1; }  # it ended early
  sleep 0.5
done
echo "plan of $n trials written and 5 trials started after $(echo "$(date +%s.%N) - $start" | bc) s"
kill -INT "$pid"
stopped=$(date +%s.%N)
wait "$pid"
echo "exit status $? $(echo "$(date +%s.%N) - $stopped" | bc) s after SIGINT;" \
  "$(wc -l < "$work/out.log") lines, $(wc -c < "$work/out.log") bytes on the console"
grep "planned trials:" "$work/out.log"
