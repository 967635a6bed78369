"Packaging, README and CLI checks: what a new user runs first."
import json, os, re, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("EM_TUTORIAL_DATA", "/nonexistent"))

def cli(*args, **kw):
    code = "import sys; from em_tutorial.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, **kw)

def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT/"README.md").read_text()
    ci = [l for l in (ROOT/".ci"/"run").read_text().splitlines() if "tools/test.sh" in l]
    assert len(ci) == 1 and ci[0] in readme

def test_import_without_bitsandbytes():
    code = ("import sys; sys.modules['bitsandbytes'] = None; "
            "import em_tutorial, em_tutorial.cli, em_tutorial.data; print('ok')")
    names = [p.stem for p in (ROOT/"em_tutorial").glob("*.py") if not p.stem.startswith("_")]
    code += "; import importlib; [importlib.import_module('em_tutorial.' + n) for n in %r]" % names
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

def test_help_on_every_subcommand():
    from em_tutorial.cli import build_parser
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"data", "demo"} <= set(sub.choices)
    for name in sub.choices:
        r = cli(name, "--help")
        assert r.returncode == 0 and "usage: em-tutorial " + name in r.stdout

@pytest.mark.skipif(not DATA.exists(), reason="EM_TUTORIAL_DATA does not name a folder of the release files")
def test_data_counts_match_the_releases():
    want = {"arc_challenge": [1119, 299, 1172], "arc_easy": [2251, 570, 2376],
            "openbookqa": [4957, 500, 500], "mmlu": [285, 1531, 14042]}
    for ds, ns in want.items():
        r = cli("data", ds, "--source", str(DATA), "--json")
        assert r.returncode == 0, r.stderr
        assert [json.loads(l)["n"] for l in r.stdout.splitlines()] == ns

def test_data_default_is_the_bundled_sample():
    r = cli("data", "openbookqa", "--split", "validation", "--json")
    assert json.loads(r.stdout) == {"dataset": "openbookqa", "split": "validation", "n": 100}

@pytest.mark.parametrize("args,msg", [
    (["data", "mmlu", "--subjects", "astrology"], "Unknown MMLU subject(s) astrology"),
    (["data", "arc_easy", "--split", "holdout"], "Unknown split 'holdout'"),
    (["data", "arc_easy", "--source", "/no/such/dir"], "does not exist"),
    (["data", "arc_easy", "--data-dir", "/no/such/dir"], "does not exist")])  # the old name
def test_bad_input_is_one_sentence(args, msg):
    r = cli(*args)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


# --- one owner for every fact -------------------------------------------------------------------------------

MODULES = {p.stem: p.read_text() for p in (ROOT/"em_tutorial").glob("*.py") if not p.stem.startswith("_")}

def _notebook_number(module: str) -> str:
    "The notebook's number as it sorts: '01' < '01b' < '02'."
    return re.search(r"File to edit: \.\./nbs/(\d+[a-z]?)_", MODULES[module])[1]

def test_modules_import_only_earlier_notebooks():
    """The notebooks are numbered in import order: no module imports from a later-numbered one (top level
    or inside)."""
    for name, text in MODULES.items():
        for dep in re.findall(r"from (?:em_tutorial)?\.(\w+) import", text):
            assert _notebook_number(dep) < _notebook_number(name), f"{name} imports {dep}"

def _numbered_notebooks() -> dict:
    """Each numbered notebook's number (as it sorts: '02a' < '02b' < '03a') -> (its path, the module it
    exports or None)."""
    out = {}
    for nb in sorted((ROOT/"nbs").glob("[0-9]*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        exp = next((m[1] for c in cells
                    for m in [re.search(r"#\| *default_exp +(\w+)", "".join(c["source"]))] if m), None)
        out[re.match(r"(\d+[a-z]?)_", nb.name)[1]] = (nb, exp)
    return out

def test_notebooks_import_only_earlier_notebooks():
    """Every cell of a numbered notebook, examples included, imports only modules of its own or
    earlier-numbered notebooks."""
    nbs = _numbered_notebooks()
    number = {exp: n for n, (_, exp) in nbs.items() if exp}
    assert set(number) == set(MODULES), set(MODULES) ^ set(number)          # every module has one notebook
    for n, (nb, _) in nbs.items():
        for c in json.loads(nb.read_text())["cells"]:
            src = "".join(c["source"]) if c["cell_type"] == "code" else ""
            deps = (re.findall(r"(?:from|import) em_tutorial\.(\w+)", src)
                    + re.findall(r"from em_tutorial import (\w+)", src))
            late = [d for d in deps if d in number and number[d] > n]
            assert not late, f"{nb.name} imports {late} from later notebooks"

def _code_lines(text: str) -> int:
    "Lines that are neither blank nor only a comment (nbdev's `# %%` cell markers included)."
    return sum(1 for l in text.splitlines() if l.strip() and not l.strip().startswith("#"))

def test_modules_are_short():
    # code lines, so that wrapping a comment to the line length costs nothing; aim: ~320
    long = {n: _code_lines(t) for n, t in MODULES.items() if _code_lines(t) > 375}
    assert not long, long

def test_library_lines_fit_the_line_length():
    "No library line over 110 characters (ruff checks the notebooks; nbdev writes `__all__` on long lines)."
    long = [(n, i + 1, len(l)) for n, t in MODULES.items() for i, l in enumerate(t.splitlines())
            if len(l) > 110 and not re.match(r"__all__ = |\s+'\w+'", l)]
    assert not long, long

def test_one_definition_of_each_fact():
    env = {n for n, t in MODULES.items()
           if re.search(r"environ\.get\([\"'](?:RANK|WORLD_SIZE|LOCAL_RANK)", t)}
    assert env == {"core"}, env                                   # the process group is read in one place
    # one seed hash (and file checksum)
    assert {n for n, t in MODULES.items() if "hashlib.sha256" in t} == {"core"}
    assert sum(len(re.findall(r"^QUANTIZE = ", t, re.M)) for t in MODULES.values()) == 1
    assert sum(len(re.findall(r"^SAMPLERS = ", t, re.M)) for t in MODULES.values()) == 1
    from em_tutorial.runs import METRIC_COLUMNS
    from em_tutorial.experiments import RESULT_COLUMNS
    assert "acceptance_rate" in METRIC_COLUMNS and "acceptance_rate" in RESULT_COLUMNS
    assert not any("accept_rate" in t for t in MODULES.values())

def test_notebooks_need_nothing_beside_the_checkout():
    """Only cells flagged slow may read the full release files, and only through EM_TUTORIAL_DATA; no
    machine paths."""
    import tempfile
    machine_paths = ([str(ROOT.parent) + "/", tempfile.gettempdir() + "/"]
                     + ([str(DATA)] if DATA.exists() else []))
    for nb in sorted((ROOT/"nbs").rglob("*.ipynb")):
        for c in json.loads(nb.read_text())["cells"]:
            src = "".join(c["source"])
            if c["cell_type"] != "code": continue
            assert not any(p in src for p in machine_paths), f"{nb.name}: {src[:80]}"
            if "release_dir()" in src and "def release_dir" not in src:
                assert src.startswith("#| slow"), f"{nb.name}: {src[:80]}"
