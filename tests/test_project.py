"Packaging, README and CLI checks: what a new user runs first."
import json, os, re, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent/"shared"/"data"

def cli(*args, **kw):
    code = "import sys; from em_tutorial.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, **kw)

def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT/"README.md").read_text()
    ci = [l for l in (ROOT/".ci"/"run").read_text().splitlines() if "tools/test.sh" in l]
    assert len(ci) == 1 and ci[0] in readme

def test_import_without_bitsandbytes():
    code = "import sys; sys.modules['bitsandbytes'] = None; import em_tutorial, em_tutorial.cli, em_tutorial.data; print('ok')"
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

@pytest.mark.skipif(not DATA.exists(), reason="release files not beside the checkout")
def test_data_counts_match_the_releases():
    want = {"arc_challenge": [1119, 299, 1172], "arc_easy": [2251, 570, 2376],
            "openbookqa": [4957, 500, 500], "mmlu": [285, 1531, 14042]}
    for ds, ns in want.items():
        r = cli("data", ds, "--data-dir", str(DATA), "--json")
        assert r.returncode == 0, r.stderr
        assert [json.loads(l)["n"] for l in r.stdout.splitlines()] == ns

def test_data_default_is_the_bundled_sample():
    r = cli("data", "openbookqa", "--split", "validation", "--json")
    assert json.loads(r.stdout) == {"dataset": "openbookqa", "split": "validation", "n": 100}

@pytest.mark.parametrize("args,msg", [(["data", "mmlu", "--subjects", "astrology"], "Unknown MMLU subject(s) astrology"),
                                      (["data", "arc_easy", "--split", "holdout"], "Unknown split 'holdout'"),
                                      (["data", "arc_easy", "--data-dir", "/no/such/dir"], "does not exist")])
def test_bad_input_is_one_sentence(args, msg):
    r = cli(*args)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr
