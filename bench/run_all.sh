#!/usr/bin/env bash
# The benchmark suite in one run (`make bench`): every bench script with small but meaningful
# settings, each table written to $OUT/<topic>.md with the command that produced it, then
# $OUT/SUMMARY.md = all tables in one file (what BENCHMARKS.md is assembled from).
# Budget: under 15 minutes on 2 cores with torch at 1 thread. Steps run one after another so their
# timings do not disturb each other; a failing step is reported and the suite goes on (exit 1 at
# the end). Usage: bash bench/run_all.sh [OUT]   (default OUT: bench/results/suite);
# ONLY="compile spaces" runs just those steps.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/suite}
PY=${PY:-.venv/bin/python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 RAY_USAGE_STATS_ENABLED=0
mkdir -p "$OUT"
failed=()
declare -a timings

# step TOPIC TITLE MODE CMD...: MODE "md" = the script writes the table to the file named by the
# substituted {MD}; "stdout" = the script's stdout is the table. Output and errors go to $OUT/TOPIC.log.
step() {
  local topic=$1 title=$2 mode=$3; shift 3
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $topic "* ]]; then return; fi
  local md="$OUT/$topic.md" log="$OUT/$topic.log" args=() a
  for a in "$@"; do args+=("${a//\{MD\}/$md}"); done
  echo "== $topic: ${args[*]}"
  local t0=$SECONDS rc=0
  if [ "$mode" = stdout ]; then
    "${args[@]}" > "$md.tmp" 2> "$log" || rc=$?
  else
    "${args[@]}" > "$log" 2>&1 || rc=$?
  fi
  local dt=$((SECONDS - t0))
  timings+=("| $topic | $dt |")
  if [ $rc -ne 0 ]; then
    failed+=("$topic")
    echo "   FAILED (exit $rc) after ${dt}s; see $log"
    tail -5 "$log" | sed 's/^/   | /'
    return
  fi
  local first=""
  if [ "$mode" = stdout ]; then first="# $title"
  elif head -1 "$md" | grep -q '^#'; then first=$(head -1 "$md"); sed -i 1d "$md"; fi
  {
    [ -n "$first" ] && { echo "$first"; echo; }
    echo "Suite step \`$topic\`: \`${args[*]}\` (OMP_NUM_THREADS=1; $(date -u '+%Y-%m-%d %H:%M UTC'), ${dt} s,"\
         "1-min load average after: $(cut -d' ' -f1 /proc/loadavg))"
    echo
    if [ "$mode" = stdout ]; then cat "$md.tmp"; rm -f "$md.tmp"; else cat "$md"; fi
  } > "$md.new" && mv "$md.new" "$md"
  echo "   done in ${dt}s -> $md"
}

step compile "Compiled IR vs hand-written model throughput" md \
  "$PY" bench/compile_throughput.py --rounds 15 --iters 3 --md {MD}
step morph "Morph latency (all blocks of ResNet-20/56/110)" md \
  "$PY" bench/morph_latency.py --depths 20 56 110 --repeats 3 --md {MD}
step preservation "Preservation error per op" md \
  "$PY" bench/preservation.py --max-sites 6 --md {MD}
step decompose "Decomposition solver" md \
  "$PY" bench/decompose_bench.py --widths 16,64 --md {MD}
step module "Module solver time" md \
  "$PY" bench/module_solver.py --widths 16,32,64 --budget 10 --random 8 --out {MD}
step spaces "Search spaces (paper variants)" md \
  "$PY" bench/spaces_table.py --repeats 2 --md {MD}
step leaderboard "Leaderboard and export overhead" stdout \
  "$PY" bench/leaderboard_overhead.py --members 60
step ray_overhead "Ray Tune per-trial overhead" md \
  "$PY" bench/ray_overhead.py --seconds 30 --out {MD}
step machinery "Machinery rate vs Ray Tune's limit, CPU use during the quickstart" md \
  "$PY" bench/machinery_rate.py --children 16 --out {MD}
step search "Search efficiency at equal compute (smoke test; the full run is in BENCHMARKS.md)" stdout \
  "$PY" bench/search_efficiency.py --quick --jobs 2 --strategies hill_climb,random_walk --out "$OUT/search_quick"
step equal_flops "Growth vs the seed trained longer at equal training FLOPs (smoke test; the full run is in BENCHMARKS.md)" stdout \
  "$PY" bench/equal_flops.py --quick --jobs 2 --out "$OUT/equal_flops_quick"
step grow_transformer "A ViT grown by exact morphs vs the target from scratch at equal training FLOPs (smoke test; the full run is in BENCHMARKS.md)" stdout \
  "$PY" bench/grow_transformer.py --quick --jobs 1 --out "$OUT/grow_transformer_quick"
step pareto "Hypervolume of the front at equal compute (smoke test; the full run is in BENCHMARKS.md)" stdout \
  "$PY" bench/pareto_front.py --quick --jobs 2 --out "$OUT/pareto_quick"
step latency "Latency measurement: noise beside a training process, cost" stdout \
  "$PY" bench/latency_noise.py --rounds 5
step data_stream "Data in memory vs streamed through a DataLoader (CIFAR-shaped)" md \
  "$PY" bench/data_stream.py --n 2048 --rounds 2 --md {MD}

{
  echo "# morphnas benchmark suite"
  echo
  echo "One run of \`bash bench/run_all.sh $OUT\` ($(date -u '+%Y-%m-%d %H:%M UTC'), $(getconf _NPROCESSORS_ONLN) cores, torch 1 thread)."
  echo "Total: ${SECONDS} s. Failed steps: ${failed[*]:-none}."
  echo
  echo "| step | seconds |"
  echo "|---|---|"
  printf '%s\n' "${timings[@]}"
  for f in compile morph preservation decompose module spaces leaderboard ray_overhead search grow_transformer pareto latency; do
    [ -f "$OUT/$f.md" ] && { echo; sed 's/^#/##/' "$OUT/$f.md"; }
  done
} > "$OUT/SUMMARY.md"
echo "suite finished in ${SECONDS}s; summary: $OUT/SUMMARY.md"
[ ${#failed[@]} -eq 0 ]
