"""A test sampler for `run_em` mechanics, registered as 'accept_all' by the driver scripts:
one sample per question, keyed by (seed, question id), always accepted with the correct answer (a random tiny
model never gets an answer right, and training needs accepted traces). `ACCEPT_ALL_DELAY` (seconds) slows
each trace, so a test can kill a run in the middle of the sampler's one `generate` call."""
import os, time
from em_tutorial.data import build_prompt
from em_tutorial.generate import generate
from em_tutorial.samplers import Trace
from em_tutorial.em import derive_seed


def accept_all(model, tokenizer, questions, *, temperature, top_p, max_new_tokens, seed, batch_size=None,
               progress=False, on_trace=None):
    "One sample per question, always accepted with the correct answer; each trace handed to `on_trace`."
    seeds = seed if isinstance(seed, list) else [seed] * len(questions)
    prompts = [build_prompt(q, tokenizer) for q in questions]
    traces = [None] * len(questions)
    def finish(i, cs):
        q, p = questions[i], prompts[i]
        time.sleep(float(os.environ.get("ACCEPT_ALL_DELAY", "0")))   # a slow sampler, to be killed mid-call
        traces[i] = Trace(qid=q.id, prompt=p, hinted=False, rationale=cs[0].text, answer=q.answer,
                          correct=True, accepted=True, tries=1, tokens=cs[0].n_tokens, train_prompt=p,
                          restates_hint=False)
        if on_trace is not None: on_trace(traces[i])
    generate(model, tokenizer, prompts, n=1, temperature=temperature, top_p=top_p,
             max_new_tokens=max_new_tokens, seed=[derive_seed(s, 0, q.id) for s, q in zip(seeds, questions)],
             batch_size=batch_size, progress=False, on_done=finish)
    return traces


def driver(config: str) -> str:
    "The text of a script that runs `run_em(EMConfig(<config>), sys.argv[1])` with this sampler registered."
    return (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
            "import accept_all; from em_tutorial.samplers import SAMPLERS; "
            "SAMPLERS['accept_all'] = accept_all.accept_all\n"
            "from em_tutorial.em import EMConfig, run_em\n"
            f"run_em(EMConfig(model='tiny-llama', sampler='accept_all', {config}), sys.argv[1], "
            "progress=False)\n")
