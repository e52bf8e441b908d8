# shellcheck shell=bash
# Sourced by run.sh and workers.sh (after `set -euo pipefail`): a writable copy of the shared
# bench kit (../shared/bench, or $WAGERWIRE_BENCH_KIT) in bench/.kit, and bench/results.
# Sets here (bench/), root (the repository) and kit (the copy).
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
kit_src=${WAGERWIRE_BENCH_KIT:-$root/../shared/bench}
kit=$here/.kit
mkdir -p "$kit" "$here/results"
cp -r "$kit_src/." "$kit/"
chmod -R u+w "$kit"
