"""A second peer baseline: transformers' own continuous batching (`model.generate_batch`).

It is measured against em_tutorial's backend, on the same prompts and sampling settings, in one run.

    # CPU: SmolLM2-135M-Instruct with a LoRA adapter
    HF_HUB_OFFLINE=1 python benchmarks/bench_generate_batch.py

Both decode one rationale per ARC-Easy training prompt (bundled sample) at temperature 0.7, top-p 0.95, up to
`--max-new-tokens`, with the peft-wrapped policy (a fresh LoRA adapter), and neither stops at the answer
statement (`generate_batch` has no stop rule), so tokens per second are raw generated tokens (up to EOS).
`generate_batch` runs twice, the first call being its warm-up (it compiles nothing on the CPU but builds its
cache and scheduler); the second is timed. Our backend is not replaced by it whatever the timing: its samples
are not a function of (weights, prompt, seed, index) alone, which the samplers' resume guarantees need
(`04b_generate`). Writes benchmarks/results/<device>-smollm2-generate_batch.json.
"""
import argparse, json, platform, sys, time
from pathlib import Path
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from em_tutorial.data import load_questions, build_prompt
from em_tutorial.generate import generate
from em_tutorial.models import load_model, add_lora

def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-prompts", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--out", default=str(Path(__file__).parent/"results"))
    a = ap.parse_args(argv)
    model, tok = load_model("smollm2", verbose=False)
    policy = add_lora(model, verbose=False).eval()
    prompts = [build_prompt(q, tok) for q in load_questions("arc_easy", "train", n=a.n_prompts, seed=0)]
    t0 = time.time()
    ours = generate(policy, tok, prompts, temperature=0.7, top_p=0.95, max_new_tokens=a.max_new_tokens,
                    seed=0, progress=False)
    ours_s, ours_tokens = time.time() - t0, sum(c.n_tokens for [c] in ours)
    res = dict(device="cpu", hardware=platform.processor() or platform.machine(),
               threads=torch.get_num_threads(),
               n_prompts=len(prompts), max_new_tokens=a.max_new_tokens, backend_s=round(ours_s, 2),
               backend_tokens=ours_tokens, backend_tok_s=round(ours_tokens / ours_s, 1),
               command=" ".join(["python benchmarks/bench_generate_batch.py",
                                 *(argv if argv is not None else sys.argv[1:])]))
    try:
        from transformers import GenerationConfig
        ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        gc = GenerationConfig(max_new_tokens=a.max_new_tokens, do_sample=True, temperature=0.7, top_p=0.95,
                              eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        policy.generate_batch(inputs=ids[:4], generation_config=gc)                 # warm-up
        t0 = time.time()
        out = policy.generate_batch(inputs=ids, generation_config=gc, warmup=False)
        hf_s, hf_tokens = time.time() - t0, sum(len(o.generated_tokens) for o in out.values())
        res.update(generate_batch_s=round(hf_s, 2), generate_batch_tokens=hf_tokens,
                   generate_batch_tok_s=round(hf_tokens / hf_s, 1),
                   ratio=round((ours_tokens / ours_s) / (hf_tokens / hf_s), 2))
    except Exception as e:
        res.update(generate_batch_error=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
    print(json.dumps(res, indent=1))
    Path(a.out).mkdir(parents=True, exist_ok=True)
    (Path(a.out)/"cpu-smollm2-generate_batch.json").write_text(json.dumps(res, indent=1) + "\n")
    return res

if __name__ == "__main__": main()
