#!/usr/bin/env bash
# The Pusher row before and after a change, in one run of the shared kit: c_coalesce (peer),
# native wagerwire, wagerwire_pusher (this checkout) and pusher_before (REV's src/ run by this
# checkout's venv via PYTHONPATH: same dependencies, no second install). Only ratios to rows
# of the same run mean anything on a shared VM. Extra options go to the kit's bench.py:
#   bench/pusher_compare.sh 8acb655 --reps 3 --ns 1000,10000
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rev=${1:?usage: bench/pusher_compare.sh REV [bench.py options]}
shift
# shellcheck source=bench/kit.sh
source "$here/kit.sh"
before=$here/.before-pusher
if [ ! -e "$before/.git" ]; then
  git -C "$root" worktree add -q --detach "$before" "$rev"
else
  git -C "$before" checkout -q --detach "$rev"
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '[pusher_apps.bench]\nkey = "benchkey"\nsecret = "benchsecret"\n' > "$tmp/pusher.toml"
out="$here/results/pusher-$(date +%Y%m%d-%H%M%S)"
serve="serve --no-demo --anonymous-publish --port {port} --log-level warning"
pusher_gen='-S /app/benchkey?protocol=7 -P /v1/ws -M {"event":"pusher:subscribe","data":{"channel":"bench"}} -E {"op":"publish","channel":"pusher:bench:bench","data":{"event":"tick","data":%PAYLOAD%}}'
cd "$kit"
./run_all.sh --stacks c_coalesce --out "$out" \
  --stack-cmd "wagerwire=$root/.venv/bin/wagerwire $serve --store sqlite:///$tmp/native.db" \
  --gen-args 'wagerwire=-S /v1/ws -P /v1/ws -M {"op":"subscribe","channels":["bench"],"filter":{"kind":"bench"}} -E {"op":"publish","channel":"bench","data":%PAYLOAD%}' \
  --ready-url 'wagerwire=http://127.0.0.1:{port}/healthz' \
  --stack-cmd "wagerwire_pusher=$root/.venv/bin/wagerwire $serve --store sqlite:///$tmp/after.db --config $tmp/pusher.toml" \
  --gen-args "wagerwire_pusher=$pusher_gen" \
  --ready-url 'wagerwire_pusher=http://127.0.0.1:{port}/healthz' \
  --stack-cmd "pusher_before=env PYTHONPATH=$before/src $root/.venv/bin/wagerwire $serve --store sqlite:///$tmp/before.db --config $tmp/pusher.toml" \
  --gen-args "pusher_before=$pusher_gen" \
  --ready-url 'pusher_before=http://127.0.0.1:{port}/healthz' \
  "$@"
