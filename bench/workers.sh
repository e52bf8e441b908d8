#!/usr/bin/env bash
# Scale-out fan-out: wagerwire on Redis + PostgreSQL with 1 worker and with 2 workers, driven
# by the shared kit's generator (../shared/bench), next to c_ref for scale.
#   bench/workers.sh                       # N=1000, 1 rep
#   bench/workers.sh --ns 1000,10000 --reps 3
# The kit pins the server to core 0 and gen to core 1; the stacks here widen their own
# affinity to both cores (taskset -c 0,1) so that a second worker has a core to run on; on
# this 2-core machine it then shares core 1 with the generator (see RESULTS-scaleout.md).
set -euo pipefail
# shellcheck source=bench/kit.sh
source "$(dirname "$0")/kit.sh"
urls=$(mktemp)
"$root/.venv/bin/python" "$here/scaleout_servers.py" > "$urls" &
servers=$!
trap 'kill -TERM $servers; wait $servers; rm -f "$urls"' EXIT
for _ in $(seq 100); do [ -s "$urls" ] && break; sleep 0.2; done
read -r redis pg < "$urls"
out="$here/results/scaleout-$(date +%Y%m%d-%H%M%S)"
ww="taskset -c 0,1 $root/.venv/bin/wagerwire serve --no-demo --anonymous-publish --port {port} --log-level warning"
gen='-S /v1/ws -P /v1/ws -M {"op":"subscribe","channels":["bench"]} -E {"op":"publish","channel":"bench","data":%PAYLOAD%}'
cd "$kit"
./run_all.sh --stacks c_ref --out "$out" --reps 1 --ns 1000 \
  --stack-cmd "ww_1worker=$ww --workers 1 --broker $redis?prefix=w1 --store $pg?schema=w1" \
  --stack-cmd "ww_2workers=$ww --workers 2 --broker $redis?prefix=w2 --store $pg?schema=w2" \
  --gen-args "ww_1worker=$gen" --gen-args "ww_2workers=$gen" \
  --ready-url 'ww_1worker=http://127.0.0.1:{port}/readyz' \
  --ready-url 'ww_2workers=http://127.0.0.1:{port}/readyz' \
  "$@"
