#!/bin/sh
# Durable publish throughput and time to acknowledgement of a git ref ("before") and of this
# work tree ("after"), measured alternately in one run (the machine's load changes by the
# minute; only figures of the same run compare). The "before" source comes from
# `git archive <ref>` in a temporary directory; both run this tree's bench script and venv.
#
#   bench/publish_before_after.sh [ref] [reps] [bench options…]
#   bench/publish_before_after.sh 8acb655 2 --seconds 4 --concurrency 64 --rate 1000 --sqlite-sync NORMAL,FULL
set -eu
cd "$(dirname "$0")/.."
ref=${1:-main}; reps=${2:-1}
[ $# -ge 2 ] && shift 2 || shift $#
before=$(mktemp -d /tmp/ww-before-XXXXXX)
trap 'rm -rf "$before"' EXIT
git archive "$ref" src tests/servers.py | tar -x -C "$before"
mkdir -p "$before/bench" && cp bench/publish_throughput.py "$before/bench/"
py=$(pwd)/.venv/bin/python
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
for rep in $(seq "$reps"); do
  echo "## before ($ref), rep $rep"
  (cd "$before" && PYTHONPATH="$before/src" "$py" bench/publish_throughput.py "$@" | grep '^{')
  echo "## after (work tree), rep $rep"
  "$py" bench/publish_throughput.py "$@" | grep '^{'
done
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
