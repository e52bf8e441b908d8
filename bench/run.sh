#!/usr/bin/env bash
# Fan-out benchmark: wagerwire (native protocol, every hub feature on: envelope, offsets, a
# filter on every subscriber, the SQLite store) next to the C references and Node `ws`, in the
# same run, with the shared kit (../shared/bench). Extra options go to the kit's bench.py:
#   bench/run.sh                                  # c_ref,c_coalesce,node_ws + wagerwire, N=1k,10k, 3 reps
#   bench/run.sh --reps 1 --ns 1000               # a quick look
# The wagerwire_pusher row: subscribers speak the Pusher protocol on /app/{key} (subscribe to
# channel "bench" of app "bench"), the publisher publishes into its hub channel over /v1/ws;
# each Pusher frame carries the payload as a JSON string (Pusher's data rule).
# Results: bench/results/<time>/ (raw.jsonl, summary.json, logs); the table is printed at the end.
set -euo pipefail
# shellcheck source=bench/kit.sh
source "$(dirname "$0")/kit.sh"
db=$(mktemp -d)/bench.db
pusher_db=$(dirname "$db")/pusher.db
pusher_cfg=$(dirname "$db")/pusher.toml
printf '[pusher_apps.bench]\nkey = "benchkey"\nsecret = "benchsecret"\n' > "$pusher_cfg"
trap 'rm -rf "$(dirname "$db")"' EXIT
out="$here/results/$(date +%Y%m%d-%H%M%S)"
stacks=${BENCH_STACKS:-c_ref,c_coalesce,node_ws}
cd "$kit"
./run_all.sh --stacks "$stacks" --out "$out" \
  --stack-cmd "wagerwire=$root/.venv/bin/wagerwire serve --no-demo --anonymous-publish --port {port} --store sqlite:///$db --log-level warning" \
  --gen-args 'wagerwire=-S /v1/ws -P /v1/ws -M {"op":"subscribe","channels":["bench"],"filter":{"kind":"bench"}} -E {"op":"publish","channel":"bench","data":%PAYLOAD%}' \
  --ready-url 'wagerwire=http://127.0.0.1:{port}/healthz' \
  --stack-cmd "wagerwire_pusher=$root/.venv/bin/wagerwire serve --no-demo --anonymous-publish --port {port} --store sqlite:///$pusher_db --config $pusher_cfg --log-level warning" \
  --gen-args 'wagerwire_pusher=-S /app/benchkey?protocol=7 -P /v1/ws -M {"event":"pusher:subscribe","data":{"channel":"bench"}} -E {"op":"publish","channel":"pusher:bench:bench","data":{"event":"tick","data":%PAYLOAD%}}' \
  --ready-url 'wagerwire_pusher=http://127.0.0.1:{port}/healthz' \
  "$@"
