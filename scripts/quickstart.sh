#!/usr/bin/env bash
# The quickstart: what a new user runs first. It grows over the project's life; today it builds a
# seed, morphs it and checks that the morphed network computes the same function.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
OUT=runs/quickstart
mkdir -p "$OUT"
$BIN/morphnas describe resnet20 --classes 10
$BIN/morphnas new resnet20 -o "$OUT/seed" --perturb --seed 0
$BIN/morphnas verify "$OUT/seed" "$OUT/seed" --json
