"""A test sampler for `run_em` mechanics, registered as 'accept_all' by the driver scripts:
one sample per question, keyed by (seed, question id), always accepted with the correct answer (a random tiny
model never gets an answer right, and training needs accepted traces). `ACCEPT_ALL_DELAY` (seconds) slows
each call, so a test can kill a run mid-chunk."""
import os, time
from em_tutorial.data import build_prompt
from em_tutorial.generate import generate
from em_tutorial.samplers import Trace
from em_tutorial.em import derive_seed


def accept_all(model, tokenizer, questions, *, temperature, top_p, max_new_tokens, seed, batch_size=None,
               progress=False):
    "One sample per question, always accepted with the correct answer."
    prompts = [build_prompt(q, tokenizer) for q in questions]
    outs = generate(model, tokenizer, prompts, n=1, temperature=temperature, top_p=top_p,
                    max_new_tokens=max_new_tokens, seed=[derive_seed(seed, 0, q.id) for q in questions],
                    batch_size=batch_size, progress=False)
    time.sleep(float(os.environ.get("ACCEPT_ALL_DELAY", "0")))
    return [Trace(qid=q.id, prompt=p, hinted=False, rationale=o[0].text, answer=q.answer, correct=True,
                  accepted=True, tries=1, tokens=o[0].n_tokens, train_prompt=p, restates_hint=False)
            for q, p, o in zip(questions, prompts, outs)]


def driver(config: str) -> str:
    "The text of a script that runs `run_em(EMConfig(<config>), sys.argv[1])` with this sampler registered."
    return (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
            "import accept_all; from em_tutorial.samplers import SAMPLERS; "
            "SAMPLERS['accept_all'] = accept_all.accept_all\n"
            "from em_tutorial.em import EMConfig, run_em\n"
            f"run_em(EMConfig(model='tiny-llama', sampler='accept_all', {config}), sys.argv[1], "
            "progress=False)\n")
