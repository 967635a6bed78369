"""`run_em` under `accelerate launch --num_processes 2` on the CPU (gloo): the E-step's
chunks and the evaluation's questions are shared out over the processes, training is DDP, and the run folder
matches a single-process run. A two-process run killed mid-sampling resumes in one process without losing or
repeating a trace.

Mechanics only: a random tiny Llama and the test sampler of accept_all.py, which accepts every sample."""
import json, os, socket, subprocess, sys
from pathlib import Path

import pytest

from accept_all import driver

DRIVER = driver("rounds=2, n_train=8, n_eval=5, max_new_tokens=10, chunk_size=2, batch_size=2, grad_accum=1, "
                "lr=5e-2, epochs=1, seed=4")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def _run(tmp_path, run_dir, processes=1, kill_at=None):
    script = tmp_path/"driver.py"
    if not script.exists(): script.write_text(DRIVER)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("EM_TUTORIAL_KILL_AT", None)
    if kill_at: env["EM_TUTORIAL_KILL_AT"] = kill_at
    if processes == 1: cmd = [sys.executable, str(script), str(run_dir)]
    else:
        cmd = [str(Path(sys.executable).parent/"accelerate"), "launch", "--multi_gpu",
               "--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no",
               "--main_process_port", str(_free_port()), str(script), str(run_dir)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout + p.stderr


def _rows(path: Path) -> list[dict]: return [json.loads(l) for l in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("single")
    rc, out = _run(tmp, tmp/"run")
    assert rc == 0, out
    return tmp/"run"


def test_two_processes_match_one(tmp_path, single):
    rc, out = _run(tmp_path, tmp_path/"run", processes=2)
    assert rc == 0, out
    two = tmp_path/"run"
    # the E-step of round 1 (the initial adapter) and the base evaluation
    # do not depend on the number of processes
    assert _rows(two/"round_1"/"traces.jsonl") == _rows(single/"round_1"/"traces.jsonl")
    assert _rows(two/"round_0"/"eval.jsonl") == _rows(single/"round_0"/"eval.jsonl")
    for k in (1, 2):
        rd = two/f"round_{k}"
        qids = [r["qid"] for r in _rows(rd/"traces.jsonl")]
        assert len(qids) == len(set(qids)) == 8   # each trace written once
        assert not list(rd.glob("*.rank*.jsonl"))   # the per-process files are folded in
        assert json.loads((rd/"sampled.done").read_text())["processes"] == 2
        # DDP: each optimizer step sees both processes' micro-batches,
        # so an epoch of 8 traces takes 2 steps, not 4
        assert json.loads((rd/"metrics.json").read_text())["train"]["steps"] == 2
        assert json.loads((single/f"round_{k}"/"metrics.json").read_text())["train"]["steps"] == 4
    assert len(_rows(two/"round_2"/"eval.jsonl")) == 5
    assert [r["round"] for r in _rows_csv(two/"metrics.csv")] == ["0", "1", "2"]


def _rows_csv(path: Path) -> list[dict]:
    import csv
    return list(csv.DictReader(path.open()))


def test_two_process_run_killed_while_sampling_resumes_in_one(tmp_path, single):
    run = tmp_path/"run"
    # process 1 (questions 2, 3, 6 and 7: seed blocks 1 and 3), after its first trace
    rc, out = _run(tmp_path, run, processes=2, kill_at="round1.trace1.rank1")
    assert rc != 0 and not (run/"round_1"/"sampled.done").exists(), out
    assert (run/"round_1"/"traces.rank1.jsonl").exists()
    rc, out = _run(tmp_path, run)   # resume with one process
    assert rc == 0, out
    assert _rows(run/"round_1"/"traces.jsonl") == _rows(single/"round_1"/"traces.jsonl")
    assert not list((run/"round_1").glob("*.rank*.jsonl"))
