"""Re-sample round 1's E-step of a recorded run with the current code and compare with its committed traces.

Round 1 samples from the base model (the initial LoRA adapter has no effect), so the sampled text, answers,
tries and token counts must come out identical whenever the prompts, the seeds and the sampler are unchanged;
the log-densities of accepted traces may differ in the 6th decimal (they are computed in padded batches).
Usage: HF_HUB_OFFLINE=1 python tools/replay_round1.py results/smollm2_arithmetic/seed0/rejection
"""
import json, sys, tempfile, time
from pathlib import Path

from em_tutorial.data import load_questions
from em_tutorial.em import EMConfig, _Policy, _sample_round

EXACT = ("qid", "prompt", "rationale", "answer", "accepted", "tries", "tokens", "rationale_tokens")

def main(run: Path) -> int:
    cfg = EMConfig.of_run(run)
    data = dict(source=cfg.source, seed=cfg.seed, instruction=cfg.instruction, hint_style=cfg.hint_style)
    questions = load_questions(cfg.dataset, "train", n=cfg.n_train, **data)
    policy = _Policy(cfg, progress=False); policy.load_adapter(None)
    folder = Path(tempfile.mkdtemp())/"round_1"; folder.mkdir()
    t0 = time.time()
    new = [t.to_dict() for t in _sample_round(policy, cfg, folder, 1, questions, print)]
    old = [json.loads(line) for line in (run/"round_1"/"traces.jsonl").read_text().splitlines()]
    same = sum(all(o[k] == n[k] for k in EXACT) for o, n in zip(old, new))
    print(f"{same}/{len(old)} traces identical in {', '.join(EXACT)} ({time.time() - t0:.0f} s)")
    return 0 if same == len(old) == len(new) else 1

if __name__ == "__main__": sys.exit(main(Path(sys.argv[1])))
