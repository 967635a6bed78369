"""`em-tutorial train` end to end on the real offline model: one round per sampler (slow) and the 4-bit
QLoRA path on CPU."""
import json, os, subprocess, sys
from pathlib import Path
import pytest

def train(*args):
    code = "import sys; from em_tutorial.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, "train", *args], capture_output=True, text=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}, timeout=1800)

def check_run_folder(run: Path, sampler: str, quantize: str):
    assert json.loads((run/"config.json").read_text())["sampler"] == sampler
    assert json.loads((run/"config.json").read_text())["quantize"] == quantize
    manifest = json.loads((run/"manifest.json").read_text())
    assert manifest["versions"]["torch"] and "started" in manifest
    traces = [json.loads(l) for l in (run/"round_1"/"traces.jsonl").read_text().splitlines()]
    assert len(traces) == len({t["qid"] for t in traces}) > 0
    assert (run/"round_1"/"adapter"/"adapter_model.safetensors").is_file()
    m = json.loads((run/"round_1"/"metrics.json").read_text())
    assert 0 <= m["eval"]["accuracy"] <= 1 and m["eval"]["accuracy_ci"][0] <= m["eval"]["accuracy"]
    assert (run/"metrics.csv").read_text().count("\n") == 3   # header, round 0, round 1

SMALL = ["--rounds", "1", "--n-train", "3", "--n-eval", "3", "--max-new-tokens", "24", "--budget", "2",
         "--warmup-ratio", "0", "--chunk-size", "3"]

def test_qlora_loop_on_cpu(tmp_path):
    "The same loop on 4-bit NF4 weights (bitsandbytes' CPU backend, float32 compute)."
    pytest.importorskip("bitsandbytes")
    r = train("--sampler", "pps", "--quantize", "4bit", "--run-dir", str(tmp_path/"run"), *SMALL)
    assert r.returncode == 0, r.stderr[-2000:]
    check_run_folder(tmp_path/"run", "pps", "4bit")

@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["rejection", "star", "pps"])
def test_train_each_sampler_one_round(tmp_path, sampler):
    r = train("--sampler", sampler, "--run-dir", str(tmp_path/"run"), "--quantize", "none",
              "--rounds", "1", "--n-train", "8", "--n-eval", "8", "--max-new-tokens", "64", "--budget", "2",
              "--warmup-ratio", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    check_run_folder(tmp_path/"run", sampler, "none")
    assert "round 1: accuracy" in r.stdout

def test_bad_sampler_is_one_sentence(tmp_path):
    r = train("--sampler", "mcmc", "--run-dir", str(tmp_path/"run"))
    assert r.returncode == 2 and "invalid choice" in r.stderr and "Traceback" not in r.stderr

def test_other_config_is_refused(tmp_path):
    run = tmp_path/"run"; run.mkdir()
    (run/"config.json").write_text(json.dumps({"sampler": "pps"}))
    r = train("--sampler", "star", "--run-dir", str(run), *SMALL)
    assert r.returncode == 2 and "differing keys" in r.stderr


def test_bad_model_writes_nothing(tmp_path):
    "A typo in --model fails in one sentence before the run folder exists."
    r = train("--model", "./no/such/model", "--run-dir", str(tmp_path/"run"), *SMALL)
    assert r.returncode == 2 and "There is no folder" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path/"run").exists()
