#!/usr/bin/env bash
# Fan-out benchmark: wagerwire (native protocol, every hub feature on: envelope, offsets, a
# filter on every subscriber, the SQLite store) next to the C references and Node `ws`, in the
# same run, with the shared kit (../shared/bench). Extra options go to the kit's bench.py:
#   bench/run.sh                                  # c_ref,c_coalesce,node_ws + wagerwire, N=1k,10k, 3 reps
#   bench/run.sh --reps 1 --ns 1000               # a quick look
# Results: bench/results/<time>/ (raw.jsonl, summary.json, logs); the table is printed at the end.
set -euo pipefail
# shellcheck source=bench/kit.sh
source "$(dirname "$0")/kit.sh"
db=$(mktemp -d)/bench.db
trap 'rm -rf "$(dirname "$db")"' EXIT
out="$here/results/$(date +%Y%m%d-%H%M%S)"
stacks=${BENCH_STACKS:-c_ref,c_coalesce,node_ws}
cd "$kit"
./run_all.sh --stacks "$stacks" --out "$out" \
  --stack-cmd "wagerwire=$root/.venv/bin/wagerwire serve --no-demo --anonymous-publish --port {port} --store sqlite:///$db --log-level warning" \
  --gen-args 'wagerwire=-S /v1/ws -P /v1/ws -M {"op":"subscribe","channels":["bench"],"filter":{"kind":"bench"}} -E {"op":"publish","channel":"bench","data":%PAYLOAD%}' \
  --ready-url 'wagerwire=http://127.0.0.1:{port}/healthz' \
  "$@"
