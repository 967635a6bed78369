"""Execute notebooks in place, as `nbdev-test` does (cells flagged `#| slow` or `#| cuda` are skipped, and keep the
outputs they had), and print each notebook's wall time. Afterwards run `nbdev-clean`.

    python tools/run_nb.py nbs/05_samplers.ipynb nbs/09_em.ipynb     # --all: run the slow cells too (not cuda)
"""
import os, re, sys, time
from pathlib import Path
import nbformat
from nbclient import NotebookClient

os.environ["PYTHONWARNINGS"] = "ignore:IProgress not found"   # tqdm's note about widgets would name this machine's folders
FLAG = re.compile(r"^#\|\s*(slow|cuda)\b", re.M)

def run(path: Path, run_slow: bool=False) -> float:
    nb = nbformat.read(path, as_version=4)
    kept = {}
    for i, c in enumerate(nb.cells):
        m = c.cell_type == "code" and FLAG.search(c.source)
        if m and not (run_slow and m.group(1) == "slow"):
            kept[i] = c; nb.cells[i] = nbformat.v4.new_raw_cell("")      # not executed; put back below
    t0 = time.time()
    NotebookClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.time() - t0
    for i, c in kept.items(): nb.cells[i] = c
    nbformat.write(nb, path)
    return seconds

if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    for a in args: print(f"{a}: {run(Path(a), '--all' in sys.argv):.0f} s", flush=True)
