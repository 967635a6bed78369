"""Write each notebook's measured run time under its title, from the output of `nbdev-test --timing`.

    bash tools/test.sh | tee test.log;  python tools/stamp_run_times.py test.log

The line says what was measured: the seconds `nbdev-test` took for the notebook on this machine (two notebooks
at a time) and how many cells it skipped (flagged `slow` or `cuda`). Re-stamping replaces the line. Run
`nbdev-clean` after.
"""
import json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "*Run time:"

def stamp(nb_path: Path, seconds: int, cores: int=2) -> None:
    nb = json.loads(nb_path.read_text())
    cells = nb["cells"]
    src = lambda c: "".join(c["source"])
    flagged = {f: sum(1 for c in cells
                      if c["cell_type"] == "code" and re.search(rf"^#\|\s*{f}\b", src(c), re.M))
               for f in ("slow", "cuda")}
    skipped = " and ".join(f"{n} `{f}` cell{'s' * (n > 1)}" for f, n in flagged.items() if n)
    took = "under a second" if seconds < 1 else f"{seconds} s"   # nbdev-test prints whole seconds, truncated
    text = (f"{MARK} {took} on {cores} CPU cores under `nbdev-test` (two notebooks at a time"
            + (f"; {skipped} skipped: `nbdev-test --flags slow` runs the slow ones" if skipped else "")
            + ").*")
    cells[:] = [c for c in cells if not (c["cell_type"] == "markdown" and src(c).startswith(MARK))]
    title = next(i for i, c in enumerate(cells)
                 if c["cell_type"] == "markdown" and src(c).lstrip().startswith("# "))
    cells.insert(title + 1, {"cell_type": "markdown", "id": f"runtime{title:02d}", "metadata": {},
                             "source": [text]})
    nb_path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")

if __name__ == "__main__":
    times = dict(re.findall(r"^(\S+\.ipynb): (\d+) secs$", Path(sys.argv[1]).read_text(), re.M))
    for p in sorted((ROOT/"nbs").rglob("*.ipynb")):
        if (p.name.startswith("_") or p.name not in times
                or '"cell_type": "code"' not in p.read_text()): continue
        stamp(p, int(times[p.name])); print(f"{p.relative_to(ROOT)}: {times[p.name]} s")
