#!/usr/bin/env bash
# OddsStream filtered vs native unfiltered through the shared kit, same run (issue 15):
#   bench/run_oddsstream.sh                       # N=1,000 and 10,000, 3 repetitions
#   bench/run_oddsstream.sh --reps 1 --ns 1000    # a quick look (any bench.py option)
# - wagerwire_native: N subscribers on channel "bench", no filter (every subscriber gets every
#   message), the native envelope; the publisher publishes gen's payload over /v1/ws.
# - wagerwire_oddsstream: N subscribers on /api/stream, each with its own single-use token and
#   one of 100 filter combinations (bench/oddsstream_kit.py); the publisher publishes prices
#   over /v1/ws, cycling through the 63 (sport, competition, bookmaker) cells, and gen expects
#   each at exactly the subscribers whose filters match it.
# - wagerwire_native_filtered (control): the same subscribers' filters as native URL
#   subscriptions (/v1/ws?channels=…&filter=…), no token, native frames, the same prices: what
#   sparse filtered delivery costs without the dialect.
# The kit's gen.c is patched in the kit's working copy (bench/.kit, made by kit.sh from
# ../shared/bench, which stays untouched) with bench/gen-groups.patch: -U (a path per
# subscriber) and -G (publisher templates with per-subscriber matching). Without those options
# the patched gen behaves exactly as the kit's, so the native row is measured as before.
# Results: bench/results/<time>/; the table is printed at the end.
set -euo pipefail
# shellcheck source=bench/kit.sh
source "$(dirname "$0")/kit.sh"
patch -s -d "$kit" -p1 < "$here/gen-groups.patch"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/native"
"$root/.venv/bin/python" "$here/oddsstream_kit.py" templates "$work/templates.txt"
# bench.py checks every stack's gen options (gen -V reads -U) before any server runs: a first
# paths file from a scratch store; each run of the stack overwrites it with its own tokens
"$root/.venv/bin/python" "$here/oddsstream_kit.py" tokens --db "$work/scratch.db" --count 10000 \
  --out "$work/paths.txt"
"$root/.venv/bin/python" "$here/oddsstream_kit.py" native-paths --count 10000 \
  --out "$work/native_paths.txt"
out="$here/results/$(date +%Y%m%d-%H%M%S)"
cd "$kit"
./run_all.sh --stacks "${BENCH_STACKS:-c_coalesce}" --out "$out" --rates "${BENCH_RATES:-1000:40,10000:4}" \
  --stack-cmd "wagerwire_native=$root/.venv/bin/wagerwire serve --no-demo --no-demo-keys --anonymous-publish --port {port} --store sqlite:///$work/native/bench.db --log-level warning" \
  --gen-args 'wagerwire_native=-S /v1/ws -P /v1/ws -M {"op":"subscribe","channels":["bench"]} -E {"op":"publish","channel":"bench","data":%PAYLOAD%}' \
  --ready-url 'wagerwire_native=http://127.0.0.1:{port}/healthz' \
  --stack-cmd "wagerwire_native_filtered=$root/.venv/bin/wagerwire serve --no-demo --no-demo-keys --anonymous-publish --port {port} --store sqlite:///$work/native/filtered.db --log-level warning" \
  --gen-args "wagerwire_native_filtered=-P /v1/ws -U $work/native_paths.txt -G $work/templates.txt" \
  --ready-url 'wagerwire_native_filtered=http://127.0.0.1:{port}/healthz' \
  --stack-cmd "wagerwire_oddsstream=$here/oddsstream_stack.sh {port} $work" \
  --gen-args "wagerwire_oddsstream=-P /v1/ws -U $work/paths.txt -G $work/templates.txt" \
  --ready-url 'wagerwire_oddsstream=http://127.0.0.1:{port}/healthz' \
  "$@"
