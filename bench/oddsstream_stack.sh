#!/usr/bin/env bash
# The kit's "wagerwire_oddsstream" stack command (bench/run_oddsstream.sh): a fresh store, a key
# on plan pro+rt and 10,000 single-use stream tokens with their filters written to DIR/paths.txt
# (gen -U reads it), then the server in the foreground (exec: the kit stops it by PID).
#   bench/oddsstream_stack.sh PORT DIR
set -euo pipefail
port=$1
dir=$2
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rm -rf "$dir/db"
mkdir -p "$dir/db"
"$root/.venv/bin/python" "$here/oddsstream_kit.py" tokens --db "$dir/db/hub.db" --count 10000 \
  --out "$dir/paths.txt"
exec "$root/.venv/bin/wagerwire" serve --no-demo --no-demo-keys --anonymous-publish \
  --port "$port" --store "sqlite:///$dir/db/hub.db" --log-level warning
