"""Kill tests for `run_em`: kill the loop at a given point (sampling, training,
evaluation, a torn trace line), run the same call again, and check the run ends exactly like an uninterrupted
one — no trace lost or duplicated.

Mechanics only: a random tiny Llama and a test sampler that accepts every sample (a random model never gets an
answer right, and training needs accepted traces). The kill points are the deterministic `EM_TUTORIAL_KILL_AT`
hook (os._exit(137), as abrupt as a SIGKILL); one test also SIGKILLs from outside while sampling."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

from accept_all import driver

DRIVER = driver("rounds=2, n_train=6, n_eval=2, max_new_tokens=12, chunk_size=2, batch_size=2, grad_accum=1, "
                "lr=5e-2, epochs=1, seed=3")


def _run(tmp_path, run_dir, kill_at=None, slow=0.0, wait=True):
    script = tmp_path/"driver.py"
    if not script.exists(): script.write_text(DRIVER)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("EM_TUTORIAL_KILL_AT", None)
    if kill_at: env["EM_TUTORIAL_KILL_AT"] = kill_at
    env["ACCEPT_ALL_DELAY"] = str(slow)   # lets a test SIGKILL the process while the round is being sampled
    p = subprocess.Popen([sys.executable, str(script), str(run_dir)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if not wait: return p
    out, _ = p.communicate(timeout=300)
    return p.returncode, out


def _state(run_dir: Path) -> dict:
    "Everything a finished run should reproduce: traces (in file order), adapter weights, accuracies."
    from safetensors.torch import load_file
    out = {}
    for k in (1, 2):
        rd = run_dir/f"round_{k}"
        rows = [json.loads(l) for l in (rd/"traces.jsonl").read_text().splitlines()]
        out[f"traces{k}"] = rows
        out[f"adapter{k}"] = {n: t.tolist()
                              for n, t in load_file(str(rd/"adapter"/"adapter_model.safetensors")).items()}
        ev = json.loads((rd/"metrics.json").read_text())["eval"]
        out[f"acc{k}"] = {key: v for key, v in ev.items() if key != "seconds"}   # wall time is not a result
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    rc, out = _run(tmp, tmp/"run")
    assert rc == 0, out
    return {**_state(tmp/"run"), "tmp": tmp, "run": tmp/"run"}


def _same(got, want, where="") -> None:
    """Equal, except floats only to 1e-6: log-probabilities are computed in padded batches, whose make-up a
    resume changes."""
    if isinstance(want, float) and isinstance(got, float):
        assert got == pytest.approx(want, rel=1e-6, abs=1e-6), where
    elif isinstance(want, dict) and isinstance(got, dict):
        assert got.keys() == want.keys(), where
        for k in want: _same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list) and isinstance(got, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)): _same(g, w, f"{where}[{i}]")
    else: assert got == want, where


def _check_same(run_dir, reference):
    state = _state(run_dir)
    for k in (1, 2):
        qids = [r["qid"] for r in state[f"traces{k}"]]
        assert len(qids) == len(set(qids)) == 6, qids                    # nothing duplicated, nothing lost
        _same(state[f"traces{k}"], reference[f"traces{k}"], f"traces{k}")
        assert state[f"adapter{k}"] == reference[f"adapter{k}"]
        assert state[f"acc{k}"] == reference[f"acc{k}"]
    assert (run_dir/"metrics.csv").read_text().count("\n") == 4          # header + rounds 0, 1, 2
    assert all((run_dir/f"round_{k}"/f"{m}.done").exists()
               for k in (1, 2) for m in ("sampled", "trained", "evaluated"))


def test_reference_run_trains(reference):
    """The uninterrupted run really trains: round 2 samples with round 1's adapter, which differs from
    round 2's."""
    assert reference["adapter1"] != reference["adapter2"]
    assert all(r["accepted"] for r in reference["traces1"])


# trace4 and eval1 fall inside one `generate` call (of the round's six questions, of its two held-out ones)
@pytest.mark.parametrize("kill_at", ["round1.trace4", "round1.train", "round1.eval1", "round1.eval",
                                     "round1.metrics", "round2.trace1"])
def test_kill_and_resume(tmp_path, reference, kill_at):
    run = tmp_path/"run"
    rc, out = _run(tmp_path, run, kill_at)
    assert rc == 137, out
    k = int(kill_at[5])
    rd = run/f"round_{k}"
    if "trace" in kill_at:                                            # the traces finished so far are on disk
        assert len((rd/"traces.jsonl").read_text().splitlines()) == int(kill_at.split("trace")[1])
        assert not (rd/"sampled.done").exists()
    if kill_at.endswith("eval1"):                                     # and the completions finished so far
        assert len((rd/"eval.rank0.jsonl").read_text().splitlines()) == 1
    if "train" in kill_at:
        assert (rd/"sampled.done").exists() and not (rd/"trained.done").exists()
        assert not (rd/"adapter").exists() and (rd/"train_log.csv").exists()
    if "eval" in kill_at:
        assert (rd/"trained.done").exists() and not (rd/"evaluated.done").exists()
    # metrics.json written, its marker not yet: the round is not finished, for everyone
    if "metrics" in kill_at:
        from em_tutorial.runs import finished_rounds, read_metrics
        assert (rd/"metrics.json").exists() and not (rd/"evaluated.done").exists()
        assert finished_rounds(run) == [] and [r["round"] for r in read_metrics(run)] == [0]
    rc, out = _run(tmp_path, run)
    assert rc == 0, out
    _check_same(run, reference)


def test_torn_trace_line(tmp_path, reference):
    """A kill in the middle of writing a trace line leaves half a line; the rerun cuts it off and redoes
    that question."""
    run = tmp_path/"run"
    rc, out = _run(tmp_path, run, "round1.trace4")
    assert rc == 137, out
    f = run/"round_1"/"traces.jsonl"
    lines = f.read_text().splitlines(keepends=True)
    f.write_text("".join(lines[:3]) + lines[3][:25])                     # half of the 4th trace
    rc, out = _run(tmp_path, run)
    assert rc == 0, out
    _check_same(run, reference)


def test_sigkill_while_sampling(tmp_path, reference):
    """A real SIGKILL from outside, once two traces are on disk and sampling is not finished (each trace
    slowed down)."""
    run = tmp_path/"run"
    p = _run(tmp_path, run, slow=1.5, wait=False)
    traces, done = run/"round_1"/"traces.jsonl", run/"round_1"/"sampled.done"
    t0 = time.time()
    while (not (traces.exists() and traces.read_text().count("\n") >= 2) and time.time() - t0 < 120
           and p.poll() is None):
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    assert not done.exists()
    rc, out = _run(tmp_path, run)
    assert rc == 0, out
    _check_same(run, reference)


def test_same_call_on_finished_run_does_nothing(reference):
    run = reference["run"]
    # the lock holds the last pid
    unchanged = lambda p: p.is_file() and p.name not in ("manifest.json", "run.lock")
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if unchanged(p)}
    assert _run(reference["tmp"], run)[0] == 0
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if unchanged(p)}
    assert before == after
    assert len(json.loads((run/"manifest.json").read_text())["resumed"]) == 1


def test_second_writer_is_refused(tmp_path, reference):
    "A second process on a folder that a running process holds is refused, in one sentence naming the first."
    run = tmp_path/"run"
    first = _run(tmp_path, run, slow=1.5, wait=False)
    t0 = time.time()
    while (not (run/"round_1"/"traces.jsonl").exists() and time.time() - t0 < 120
           and first.poll() is None): time.sleep(0.05)
    rc, out = _run(tmp_path, run)
    first.kill(); first.wait()
    assert rc != 0 and f"is in use by process {first.pid}" in out, out
    rc, out = _run(tmp_path, run)                                         # the lock died with its process
    assert rc == 0, out
    _check_same(run, reference)


def test_folder_written_by_the_old_code_resumes(tmp_path):
    """tests/fixtures/old_run was written by the code before the house move (train.py), killed at
    round2.chunk0."""
    import shutil, warnings
    from em_tutorial.em import EMConfig, run_em
    run = tmp_path/"old_run"
    shutil.copytree(Path(__file__).parent/"fixtures"/"old_run", run)
    done = ({p: p.read_bytes() for p in (run/"round_0").iterdir()}
            | {p: p.read_bytes() for p in (run/"round_1").rglob("*") if p.is_file()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = run_em(EMConfig.of_run(run), run, progress=False)
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert all(p.read_bytes() == b for p, b in done.items())                # finished rounds are not redone
    assert (run/"round_2"/"evaluated.done").exists()
    assert "acceptance_rate" in (run/"metrics.csv").read_text().splitlines()[0].split(",")
    # the cut shares: empty for the rounds the old code finished, measured for the round the new code finished
    assert ([(r["eval_cut_share"] is None, r["sample_cut_share"] is None) for r in rows]
            == [(True, True), (True, True), (False, False)])
    import csv
    with open(run/"metrics.csv", newline="") as f: table = list(csv.DictReader(f))
    assert [(r["eval_cut_share"], r["sample_cut_share"]) for r in table][:2] == [("", ""), ("", "")]
    from em_tutorial.experiments import collect_results, results_table
    old = collect_results(tmp_path, samplers=("old_run",))
    assert [(r["round"], r["eval_cut_share"] is None) for r in old] == [(0, True), (1, True), (2, False)]
    assert "| old_run | 2 |" in results_table(old)


PPS_IW = ("import sys\nfrom em_tutorial.em import EMConfig, run_em\n"
          "run_em(EMConfig(model='tiny-llama', sampler='pps_iw', rounds=1, n_train=4, n_eval=2, budget=3, "
          "max_new_tokens=10, chunk_size=2, objective_k=2, objective_n=2, seed=5), sys.argv[1], "
          "progress=False)\n")


def test_pps_iw_and_the_objective_resume(tmp_path):
    """PPS-IW's traces (with their weights' ESS) and the objective estimate come out the same after a kill
    mid-sampling and mid-evaluation."""
    def run(folder, kill_at=None):
        script = tmp_path/"iw.py"; script.write_text(PPS_IW)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        env.pop("EM_TUTORIAL_KILL_AT", None)
        if kill_at: env["EM_TUTORIAL_KILL_AT"] = kill_at
        p = subprocess.run([sys.executable, str(script), str(folder)], env=env, capture_output=True,
                           text=True, timeout=300)
        return p.returncode, p.stdout + p.stderr
    assert run(tmp_path/"ref")[0] == 0
    for kill_at in ("round1.trace1", "round1.eval"):
        folder = tmp_path/kill_at
        rc, out = run(folder, kill_at)
        assert rc == 137, out
        rc, out = run(folder)
        assert rc == 0, out
        for name in ("traces.jsonl", "objective.jsonl"):
            rows = lambda f, name=name: [json.loads(l) for l in (f/"round_1"/name).read_text().splitlines()]
            _same(rows(folder), rows(tmp_path/"ref"), f"{kill_at}/{name}")
    traces = [json.loads(l) for l in (tmp_path/"ref"/"round_1"/"traces.jsonl").read_text().splitlines()]
    assert len(traces) == 4 and all(t["hinted"] and t["tries"] == 3 and t["ess"] is not None for t in traces)


REAL_SAMPLER = ("import sys\nfrom em_tutorial.em import EMConfig, run_em\n"
                "run_em(EMConfig(model='tiny-llama', sampler=sys.argv[2], rounds=1, n_train=6, n_eval=4, "
                "budget=2, max_new_tokens=10, chunk_size=2, seed=7), sys.argv[1], progress=False)\n")


@pytest.mark.parametrize("sampler", ["rejection", "star", "pps"])
def test_real_sampler_killed_mid_call_resumes_to_the_same_traces(tmp_path, sampler):
    """Each round's questions go to the sampler in one call (its `generate` calls take all six); a kill
    after the third trace is written lands inside that call, and so does a kill after the second held-out
    completion. The rerun samples only what is missing and ends with the files of an uninterrupted run."""
    script = tmp_path/"real.py"; script.write_text(REAL_SAMPLER)
    def run(folder, kill_at=None):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        env.pop("EM_TUTORIAL_KILL_AT", None)
        if kill_at: env["EM_TUTORIAL_KILL_AT"] = kill_at
        p = subprocess.run([sys.executable, str(script), str(folder), sampler], env=env,
                           capture_output=True, text=True, timeout=300)
        return p.returncode, p.stdout + p.stderr
    rc, out = run(tmp_path/"ref")
    assert rc == 0, out
    read = lambda f, name: [json.loads(l) for l in (f/"round_1"/name).read_text().splitlines()]
    for kill_at, partial, n in (("round1.trace3", "traces.jsonl", 3),
                                ("round1.eval2", "eval.rank0.jsonl", 2)):
        folder = tmp_path/kill_at
        rc, out = run(folder, kill_at)
        assert rc == 137, out
        assert len(read(folder, partial)) == n                           # what was finished before the kill
        rc, out = run(folder)
        assert rc == 0, out
        for name in ("traces.jsonl", "eval.jsonl"):
            _same(read(folder, name), read(tmp_path/"ref", name), f"{kill_at}/{name}")
