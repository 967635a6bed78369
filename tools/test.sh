#!/usr/bin/env bash
# The project's whole test suite, as the README and CI run it (from the repository root, in an installed venv).
set -euo pipefail
export HF_HUB_OFFLINE=1 TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=false
cd "$(dirname "$0")/.."

echo "== 1. the exported library matches the notebooks"
nbdev-export
if [ -n "$(git status --porcelain -- em_tutorial)" ]; then
  git status --porcelain -- em_tutorial; git --no-pager diff --stat -- em_tutorial
  echo "em_tutorial/ differs from the notebooks: run nbdev-export and commit."; exit 1
fi

echo "== 2. notebooks are clean"
nbdev-clean
if [ -n "$(git status --porcelain -- nbs)" ]; then
  git status --porcelain -- nbs; echo "notebooks are not clean: run nbdev-clean and commit."; exit 1
fi

echo "== 3. README.md is generated from nbs/index.ipynb"
python tools/make_readme.py --check

echo "== 4. ruff check (pyproject.toml: line length 110; the notebooks, library, tests, tools and benchmarks)"
ruff check --output-format concise .

echo "== 5. notebooks (nbdev-test; cells flagged slow or cuda are skipped)"
# convert the offline SmolLM2 once before the notebooks run two at a time (each would otherwise race to convert it)
python -c "from em_tutorial.models import offline_smollm2; offline_smollm2(verbose=False)" 2>/dev/null || true
# one torch thread per notebook: nbdev-test runs two at a time, and two threads each oversubscribe 2 cores 3-10x
time OMP_NUM_THREADS=1 nbdev-test --timing

echo "== 6. pytest (tests marked slow are skipped; run them with: pytest -m slow)"
time python -m pytest -q -m "not slow and not cuda" tests

echo "== 7. docs pre-processing (nbdev-proc-nbs; Quarto renders the site where it can be installed)"
rm -rf _proc
log=$(mktemp)
if ! nbdev-proc-nbs >"$log" 2>&1 || grep -q "Traceback" "$log"; then
  grep -v -i "quarto\|sudo" "$log"; echo "nbdev-proc-nbs failed"; exit 1
fi
python - <<'PY'
from pathlib import Path
import nbformat
nbs = sorted(Path("nbs").rglob("*.ipynb"))
procs = [Path("_proc")/p.relative_to("nbs") for p in nbs if not p.name.startswith("_")]
missing = [str(p) for p in procs if not p.exists()]
assert not missing, f"nbdev-proc-nbs did not process: {missing}"
for p in procs: assert nbformat.read(p, as_version=4).cells, f"{p} has no cells"   # (nbdev adds timing metadata that strict validation rejects)
print(f"{len(procs)} notebooks pre-processed for the docs")
PY
echo "== all checks passed"
