#!/usr/bin/env bash
# Same-run fan-out comparison of two revisions: wagerwire at REV ("before", its own worktree
# and venv under bench/.before) next to this checkout ("after") and c_coalesce, interleaved by
# the shared kit, so only the ratios matter. Extra options go to the kit's bench.py:
#   bench/compare.sh 2926669 --reps 2 --ns 1000,10000
#   BEFORE_FLAGS= AFTER_FLAGS=--anonymous-publish bench/compare.sh REV   # flags per side
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rev=${1:?usage: bench/compare.sh REV [bench.py options]}
shift
source "$here/kit.sh"
before=$here/.before
if [ ! -d "$before/.git" ] && [ ! -f "$before/.git" ]; then
  git -C "$root" worktree add -q --detach "$before" "$rev"
else
  git -C "$before" checkout -q --detach "$rev"
fi
make -C "$before" -s .venv/.installed >/dev/null
# A revision before anonymous publishing was refused has no --anonymous-publish flag.
before_flags=${BEFORE_FLAGS-$("$before/.venv/bin/wagerwire" serve --help | grep -q anonymous-publish && echo --anonymous-publish || true)}
after_flags=${AFTER_FLAGS---anonymous-publish}
db=$(mktemp -d)
trap 'rm -rf "$db"' EXIT
out="$here/results/compare-$(date +%Y%m%d-%H%M%S)"
gen='-S /v1/ws -P /v1/ws -M {"op":"subscribe","channels":["bench"],"filter":{"kind":"bench"}} -E {"op":"publish","channel":"bench","data":%PAYLOAD%}'
cd "$kit"
./run_all.sh --stacks c_coalesce --out "$out" \
  --stack-cmd "before=$before/.venv/bin/wagerwire serve --no-demo $before_flags --port {port} --store sqlite:///$db/before.db --log-level warning" \
  --gen-args "before=$gen" --ready-url 'before=http://127.0.0.1:{port}/healthz' \
  --stack-cmd "after=$root/.venv/bin/wagerwire serve --no-demo $after_flags --port {port} --store sqlite:///$db/after.db --log-level warning" \
  --gen-args "after=$gen" --ready-url 'after=http://127.0.0.1:{port}/healthz' \
  "$@"
