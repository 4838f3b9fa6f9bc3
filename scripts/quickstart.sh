#!/usr/bin/env bash
# The quickstart: what a new user runs first. A complete morph search on scikit-learn's digits
# (offline, 2 CPU cores, a few minutes): seed training, children grown by function-preserving
# morphs and fine-tuned on Ray Tune, the leaderboard, and the best network exported.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
RUN=runs/quickstart
$BIN/morphnas describe tiny_resnet --classes 10
if [ -f "$RUN/run_state.json" ]; then
  # Run before (or interrupted): continue it; a finished run just says so.
  $BIN/morphnas resume "$RUN"
else
  $BIN/morphnas search configs/quickstart.yaml
fi
$BIN/morphnas leaderboard "$RUN" --top 5
echo "best network: $RUN/best   (dashboard: $BIN/morphnas dashboard $RUN)"
