#!/usr/bin/env bash
# Soak run (bench/soak.py): churn, slow consumers, restarts and Redis blips against one hub,
# with the RSS, fd, task and latency trend at the end. Options go to soak.py:
#   bench/soak.sh                         # 30 minutes, Redis broker
#   bench/soak.sh --minutes 2 --broker memory
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exec "$root/.venv/bin/python" "$root/bench/soak.py" "$@"
