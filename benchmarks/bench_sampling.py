"""Sampling throughput: em_tutorial's backend against the straightforward baseline.

Both are measured in one run.

    # CPU: SmolLM2-135M-Instruct
    HF_HUB_OFFLINE=1 python benchmarks/bench_sampling.py
    # CUDA: random-init model of a real shape
    python benchmarks/bench_sampling.py --shape qwen2.5-0.5b --weights nf4

Baseline: what a straightforward implementation of an E-step does: the policy with its LoRA adapter attached
(peft-wrapped), plain `model.generate` with sampling, batch 64, dynamic cache, every sequence decoded to
`max_new_tokens` or EOS. Backend: `em_tutorial.generate.generate` on the same prompts with the same sampling
settings (temperature, top-p, max_new_tokens).

Both do the same job: one rationale per prompt, of which only the part up to the answer statement is used.
Throughput is therefore counted in *useful tokens*: for each completion, the tokens up to and including its
first "The answer is (X)" (all of them when it has none), counted on each method's own outputs, divided by
wall time. Raw generated tokens per second are printed too. The backend runs twice: continuously batched (its
default) and in fixed batches of 64 (`continuous=False`, how it decoded before continuous batching), on the
same rows.

Roofline: the machine's achievable matmul rate on the model's own weight matrices (every linear layer, the
output layer included, at the best of several row counts up to 1024), and the FLOPs the job needs (each prompt
once without padding; one decoding forward per generated token after the first; linear layers, attention
scores and values, the output layer); the backend's achieved FLOP/s over the time it took, as a fraction of
that rate.

Then one EM round (`run_em`, rejection sampling, budget `--round-budget` = 4) on `--round-questions` = 64
training questions of `--round-dataset` (arithmetic by default) and `--round-eval` = 300 held-out ones: each
phase's seconds, generated tokens and tok/s, and the E-step's and evaluation's tok/s as a share of the
throughput job's generated tok/s (goal: 80 %; `--round-questions 0` skips the round). Each phase is also given
without the scoring it does besides generating (the E-step's hint-leakage scores, the evaluation's answer-only
accuracy) and priced in FLOPs like the throughput job (the prompts' common prefix counted once, as the backend
prefills it), because a task with long prompts and short answers (arithmetic: ~175 prompt tokens, ~20
generated) spends more per generated token than ARC's (~110 and ~50): its GFLOP/s as a share of the throughput
job's compares the two on equal terms. And run_em's estimate of the E-step (`_E_STEP_FACTOR`) is checked
against the measured time. The JSON's `goals` says, for each goal (also the roofline fraction's 70 %), what
was measured and by how much it falls short.
A model of over 1B parameters (`--model $QWEN_GGUF`) is held to the 1.5B goals instead: roofline 50 %, the
round (sample, train, evaluate) within 30 minutes, peak resident memory within 12 GB; `--no-baseline` skips
peft `generate` and the fixed-64 rerun, which at that size take longer than the round.
Writes benchmarks/results/<device>-<model>.json.
"""
import argparse, gc, json, multiprocessing, platform, resource, sys, time
from pathlib import Path
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from em_tutorial.data import load_questions, build_prompt, truncate_after_answer, answer_stated
from em_tutorial.generate import generate, auto_batch_size
from em_tutorial.kvcache import shared_prefix

SHAPES = {  # real shapes, random init, no download
    "qwen2.5-0.5b": dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                         num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         max_position_embeddings=32768, tie_word_embeddings=True),
    "llama-3.2-1b": dict(model_type="llama", vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                         num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                         max_position_embeddings=131072, tie_word_embeddings=True),
}

def hardware() -> str:
    if torch.cuda.is_available(): return torch.cuda.get_device_name(0)
    try: cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except Exception: cpu = platform.processor()
    return f"{cpu}, {torch.get_num_threads()} threads"

def load(args):
    "The policy (peft-wrapped, LoRA r=16) and tokenizer."
    # CUDA shapes are random-init, saved to args.model_dir for run_em
    from em_tutorial.models import load_model, add_lora
    args.model_dir = args.model or "smollm2"
    if args.model or args.shape == "smollm2":
        model, tok = load_model(args.model_dir, quantize="none", verbose=False)
    else:
        import tempfile
        from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig
        cfg = dict(SHAPES[args.shape]); mt = cfg.pop("model_type")
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.for_model(mt, **cfg), dtype=torch.bfloat16)
        # a real tokenizer for the prompts (its ids fit any of the shapes)
        _, tok = load_model("smollm2", verbose=False)
        args.model_dir = tempfile.mkdtemp(prefix="bench_model_")
        model.save_pretrained(args.model_dir); tok.save_pretrained(args.model_dir); del model
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16) if args.weights == "nf4" else None
        model = AutoModelForCausalLM.from_pretrained(args.model_dir, quantization_config=q,
                                                     dtype=torch.bfloat16, device_map={"": 0})
    model = add_lora(model, r=16, verbose=False)
    return model, tok

def useful_tokens(tok, texts_and_counts) -> int:
    "Tokens up to and including each completion's first answer statement (all if it has none)."
    total = 0
    for text, n in texts_and_counts:
        cut = truncate_after_answer(text)
        total += n if cut == text else len(tok(cut, add_special_tokens=False).input_ids)
    return total

def baseline(model, tok, prompts, args):
    "Plain generate on the peft-wrapped model, batch 64, dynamic cache, sampling, no early stop"
    torch.manual_seed(args.seed)
    outs = []
    t0 = time.perf_counter()
    for i in range(0, len(prompts), 64):
        enc = tok(prompts[i:i+64], return_tensors="pt", padding=True,
                  add_special_tokens=False).to(model.device)
        with torch.inference_mode():
            ids = model.generate(**enc, do_sample=True, temperature=args.temperature, top_p=args.top_p,
                                 max_new_tokens=args.max_new_tokens, pad_token_id=tok.pad_token_id)
        new = ids[:, enc.input_ids.shape[1]:]
        for row in new:
            n = int((row != tok.pad_token_id).sum())
            outs.append((tok.decode(row, skip_special_tokens=True), n))
    if torch.cuda.is_available(): torch.cuda.synchronize()
    return outs, time.perf_counter() - t0

def backend(model, tok, prompts, args, **kw):
    t0 = time.perf_counter()
    res = generate(model, tok, prompts, temperature=args.temperature, top_p=args.top_p,
                   max_new_tokens=args.max_new_tokens, seed=args.seed, stop=answer_stated,
                   progress=False, **kw)
    if torch.cuda.is_available(): torch.cuda.synchronize()
    return [(c[0].text, c[0].n_tokens) for c in res], time.perf_counter() - t0

def _linears(model) -> list:
    "The weight matrices a token goes through, the output layer last."
    # every linear layer of the base model (LoRA factors excluded), the output layer last. 4-bit (NF4)
    # weights are de-quantised, so a 4-bit run's roofline is the matmul rate on the same matrices unquantised:
    # an upper bound for NF4 matmuls (a packed uint8 weight has neither the shape nor a dtype to draw from).
    from em_tutorial.models import is_4bit
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    def weight(m):
        if not is_4bit(m): return m.weight
        from bitsandbytes.functional import dequantize_4bit
        return dequantize_4bit(m.weight.data, m.weight.quant_state)
    body = [weight(m) for name, m in base.named_modules()
            if isinstance(m, torch.nn.Linear) and "lora_" not in name and m is not head]
    return body + [weight(head)]

def matmul_rate(model, rows=(64, 128, 256, 512, 1024), repeats=3) -> dict:
    "Achievable FLOP/s per row count in `rows`, the best of `repeats` passes."
    # one pass: that many random activations through the model's own weight matrices
    ws = [w.detach() for w in _linears(model)]
    flop = sum(2 * w.shape[0] * w.shape[1] for w in ws)
    out = {}
    with torch.inference_mode():
        for m in rows:
            xs = {w.shape[1]: torch.randn(m, w.shape[1], dtype=w.dtype, device=w.device) for w in ws}
            best = float("inf")
            for _ in range(repeats):
                if torch.cuda.is_available(): torch.cuda.synchronize()
                t0 = time.perf_counter()
                for w in ws: F.linear(xs[w.shape[1]], w)
                if torch.cuda.is_available(): torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t0)
            out[m] = flop * m / best
    return out

def job_flops(model, prompt_lens, gen_lens, shared: int=0) -> float:
    "FLOPs the sampling job needs: the prompt passes and one forward per later generated token."
    # shared: leading prompt tokens common to all prompts, prefilled once by the backend (not counted per row)
    # each prompt once (no padding, logits for its last position only), then one forward per generated token
    # after the first (the first comes from the prompt pass): every linear layer, the attention scores and
    # weighted values (2 x 2 x heads x head size per key), the output layer.
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    ws = _linears(model)
    # the output layer is the last linear
    head = 2 * ws[-1].shape[0] * ws[-1].shape[1]
    body = sum(2 * w.shape[0] * w.shape[1] for w in ws[:-1])
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    attn = 4 * cfg.num_hidden_layers * cfg.num_attention_heads * head_dim   # per (query, key) pair
    total = 0
    for P, n in zip(prompt_lens, gen_lens):
        total += (P - shared) * body + head + attn * (P * (P + 1) - shared * (shared + 1)) // 2  # prompt pass
        # token t attends P + t keys
        total += (n - 1) * (body + head) + attn * sum(P + t for t in range(1, n))
    return float(total)

def em_round(args, model, tok, throughput_gflops: float) -> dict:
    "One run_em round (sample, train, evaluate) on this model: each phase's seconds, tokens, tok/s, GFLOP/s."
    import tempfile
    from em_tutorial.core import read_jsonl
    from em_tutorial.em import EMConfig, run_em, expected_generations, _E_STEP_FACTOR
    work = Path(tempfile.mkdtemp(prefix="bench_round_"))
    cfg = EMConfig(model=args.model_dir, dataset=args.round_dataset, source=args.source, rounds=1,
                   n_train=args.round_questions, n_eval=args.round_eval, budget=args.round_budget,
                   max_new_tokens=args.max_new_tokens, epochs=1, warmup_ratio=0.0,
                   quantize="4bit" if args.weights == "nf4" and args.shape != "smollm2" else "none",
                   seed=args.seed)
    # in a child process, as a user's `em-tutorial train` runs: the round's own peak memory, not this script's
    t0 = time.perf_counter()
    child = multiprocessing.get_context("spawn").Process(target=run_em, args=(cfg, work/"run"),
                                                          kwargs=dict(progress=False))
    child.start(); child.join()
    if child.exitcode:
        raise RuntimeError(f"The EM round failed (exit code {child.exitcode}); its output is above.")
    total = time.perf_counter() - t0
    peak = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6, 2)
    rd = work/"run"/"round_1"
    m = json.loads((rd/"metrics.json").read_text())
    sec = m["seconds"]
    # the prompt lengths, to price each phase's work in FLOPs as the throughput job is priced
    data = dict(source=cfg.source, seed=cfg.seed, instruction=cfg.instruction, hint_style=cfg.hint_style)
    def plen(split, n):   # each question's prompt length, and the prefix they all share (prefilled once)
        ids = {q.id: tok(build_prompt(q, tok, hint=False), add_special_tokens=False)["input_ids"]
               for q in load_questions(cfg.dataset, split, n=n, **data)}
        return {k: len(v) for k, v in ids.items()}, shared_prefix(list(ids.values()))
    train_len, train_shared = plen("train", cfg.n_train)
    eval_len, eval_shared = plen(cfg.eval_split, cfg.n_eval)
    # E-step: every try of a question re-reads its prompt; its tokens are all its tries' generated tokens
    traces, evals = read_jsonl(rd/"traces.jsonl"), read_jsonl(rd/"eval.jsonl")
    e_flop = sum(job_flops(model, [train_len[t["qid"]]] * t["tries"],
                           [max(1, t["tokens"] // max(1, t["tries"]))] * t["tries"], train_shared)
                 for t in traces)
    v_flop = job_flops(model, [eval_len[r["qid"]] for r in evals], [max(1, r["n_tokens"]) for r in evals],
                       eval_shared)
    def phase(s, n, prompt_tokens, flop, overhead):
        # generation alone: the phase's seconds less the scoring it also does (hint leakage, answer-only)
        gen = s - (overhead or 0)
        return dict(seconds=s, other_seconds=overhead, generate_seconds=round(gen, 2), tokens=n,
                    tok_s=round(n / s, 1), generate_tok_s=round(n / gen, 1),
                    prompt_tokens_per_generated_token=round(prompt_tokens / n, 2),
                    generate_gflops=round(flop / gen / 1e9, 1),
                    gflops_ratio_to_throughput_job=round(flop / gen / 1e9 / throughput_gflops, 2))
    e = phase(sec["sample"], sum(t["tokens"] for t in traces),
              sum(train_len[t["qid"]] * t["tries"] for t in traces), e_flop, sec.get("sample_scoring"))
    v = phase(sec["eval"], sum(r["n_tokens"] for r in evals), sum(eval_len[r["qid"]] for r in evals), v_flop,
              sec.get("eval_answer_only"))
    # run_em's estimate of the E-step, checked: seconds per greedy answer of round 0 × expected generations ×
    # _E_STEP_FACTOR; the factor this round measured
    m0 = json.loads((work/"run"/"round_0"/"metrics.json").read_text())
    per_q = m0["seconds"]["eval"] / m0["eval"]["n"]
    gens = expected_generations(cfg, m0["eval"]["accuracy"])
    return dict(dataset=cfg.dataset, n_train=cfg.n_train, n_eval=cfg.n_eval, sampler=cfg.sampler,
                budget=cfg.budget, max_new_tokens=cfg.max_new_tokens, n_accepted=m["n_accepted"],
                tries=sum(t["tries"] for t in traces), e_step=e, evaluate=v,
                m_step=dict(seconds=sec["train"], steps=(m.get("train") or {}).get("steps")),
                base_eval_s=m0["seconds"]["eval"], base_accuracy=m0["eval"]["accuracy"],
                e_step_factor=dict(assumed=_E_STEP_FACTOR,
                                   measured=round(sec["sample"] / (cfg.n_train * gens * per_q), 2)),
                # the round itself (sample, train, evaluate), without the base model's evaluation before it
                round_s=round(sec["sample"] + sec["train"] + sec["eval"], 1), total_s=round(total, 1),
                # the round's process: load, base evaluation, E-step, M-step, evaluation
                peak_rss_gb=peak)

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="smollm2", choices=["smollm2", *SHAPES])
    ap.add_argument("--weights", default="bf16", choices=["bf16", "nf4"], help="CUDA shapes only")
    ap.add_argument("--n-prompts", type=int, default=192)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None,
                    help="any model load_model takes (a GGUF file, a folder); default: SmolLM2 or --shape")
    ap.add_argument("--round-questions", type=int, default=64,
                    help="training questions of the EM-round timing (0: skip it)")
    ap.add_argument("--round-eval", type=int, default=300, help="held-out questions of the EM round")
    ap.add_argument("--round-budget", type=int, default=4, help="rejection sampling's tries in the EM round")
    ap.add_argument("--round-dataset", default="arithmetic",
                    help="dataset of the EM round (e.g. arc_challenge with --source)")
    ap.add_argument("--source", default=None,
                    help="release-file folder for the EM round's dataset (default: bundled sample)")
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip peft generate and the fixed-64 rerun (a 1.5B model: longer than the round)")
    ap.add_argument("--out", default=str(Path(__file__).parent/"results"))
    args = ap.parse_args()
    model, tok = load(args)
    qs = load_questions("arc_easy", "train", n=args.n_prompts, seed=args.seed)
    prompts = [build_prompt(q, tok) for q in qs]
    # warm-up on a few prompts so one-off costs (allocations, kernel selection) count for neither
    backend(model, tok, prompts[:2], argparse.Namespace(**{**vars(args), "max_new_tokens": 4}))
    e_out, e_time = backend(model, tok, prompts, args)
    if args.no_baseline: b_out, b_time, f_time = None, None, None
    else:
        b_out, b_time = baseline(model, tok, prompts, args)
        f_out, f_time = backend(model, tok, prompts, args, batch_size=64, continuous=False)
        assert f_out == e_out, "continuous and fixed batches must give the same samples"
    e_use = useful_tokens(tok, e_out)
    b_use = useful_tokens(tok, b_out) if b_out else None
    n_params = sum(p.numel() for p in model.parameters())
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    name = (Path(args.model).stem if args.model else args.shape if args.shape == "smollm2"
            else f"{args.shape}-{args.weights}")
    def r2(x, d=2): return None if x is None else round(x, d)
    res = dict(device=dev, hardware=hardware(), model=name, params_b=round(n_params / 1e9, 3),
               n_prompts=len(prompts), max_new_tokens=args.max_new_tokens, temperature=args.temperature,
               top_p=args.top_p, baseline_s=r2(b_time), backend_s=round(e_time, 2),
               baseline_raw_tokens=sum(n for _, n in b_out) if b_out else None,
               backend_raw_tokens=sum(n for _, n in e_out),
               baseline_useful_tokens=b_use, backend_useful_tokens=e_use,
               baseline_tok_s=r2(b_use / b_time, 1) if b_out else None,
               backend_tok_s=round(e_use / e_time, 1),
               backend_batch_size=auto_batch_size(model, 0) if dev == "cpu" else "auto",
               fixed64_s=r2(f_time), fixed64_tok_s=r2(e_use / f_time, 1) if f_time else None)
    res["ratio"] = r2(res["backend_tok_s"] / res["baseline_tok_s"]) if b_out else None
    res["ratio_continuous_over_fixed64"] = r2(f_time / e_time) if f_time else None
    rates = matmul_rate(model)
    best = max(rates, key=rates.get)
    pids = tok(prompts, add_special_tokens=False)["input_ids"]
    plens, shared = [len(x) for x in pids], shared_prefix(pids)
    flop = job_flops(model, plens, [n for _, n in e_out], shared)
    res["prompt_tokens_per_generated_token"] = round(sum(plens) / res["backend_raw_tokens"], 2)
    res["shared_prefix_tokens"] = shared
    res["roofline"] = dict(matmul_gflops_by_rows={m: round(r / 1e9, 1) for m, r in rates.items()},
                           best_rows=best,
                           job_gflop=round(flop / 1e9, 1), backend_gflops=round(flop / e_time / 1e9, 1),
                           fraction=round(flop / e_time / rates[best], 3),
                           bound_tok_s=round(sum(n for _, n in e_out) * rates[best] / flop, 1))
    res["command"] = "python " + " ".join(sys.argv)
    print(f"{'':10} {'seconds':>8} {'raw tok':>8} {'useful tok':>10} {'useful tok/s':>12}")
    if b_out: print(f"{'baseline':10} {b_time:8.1f} {res['baseline_raw_tokens']:8d} {b_use:10d} "
                    f"{res['baseline_tok_s']:12.1f}")
    print(f"{'backend':10} {e_time:8.1f} {res['backend_raw_tokens']:8d} {e_use:10d} "
          f"{res['backend_tok_s']:12.1f}   continuous, batch {res['backend_batch_size']}")
    if b_out:
        print(f"{'fixed 64':10} {f_time:8.1f} {res['backend_raw_tokens']:8d} {e_use:10d} "
              f"{res['fixed64_tok_s']:12.1f}   the backend in fixed batches of 64 (same samples)")
        print(f"ratio (backend / baseline useful tok/s): {res['ratio']:.2f}   continuous / fixed 64: "
              f"{res['ratio_continuous_over_fixed64']:.2f}   [{res['hardware']}]")
    r = res["roofline"]
    print(f"roofline: matmul {r['matmul_gflops_by_rows']} GFLOP/s by rows; job {r['job_gflop']} GFLOP; "
          f"backend {r['backend_gflops']} GFLOP/s = {r['fraction']:.0%} of the best ({r['best_rows']} rows); "
          f"bound {r['bound_tok_s']} tok/s")
    from profile_sampling import profile
    res["profile"] = profile(model, tok, prompts, temperature=args.temperature, top_p=args.top_p,
                             max_new_tokens=args.max_new_tokens, seed=args.seed, stop=answer_stated)
    print(f"where the backend's time goes ({res['profile']['seconds']} s, a second run):")
    for part, share in res["profile"]["share_by_part"].items(): print(f"  {share:6.1%}  {part}")
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    res["cpu_flags"] = sorted({f for line in open("/proc/cpuinfo") if line.startswith("flags")
                               for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx", "fma"))}
                              ) if Path("/proc/cpuinfo").exists() else []
    # written now and again at the end: a round that fails (at 1.5B, out of memory) keeps the job's numbers
    (out/f"{dev}-{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    if args.round_questions:
        # the round loads its own copy: keep only this one's shapes (job_flops reads them), free its weights
        model.to("meta"); gc.collect()
        r = res["em_round"] = em_round(args, model, tok, res["roofline"]["backend_gflops"])
        raw = res["backend_raw_tokens"] / res["backend_s"]    # the throughput job's generated tok/s
        for ph in ("e_step", "evaluate"):
            r[ph]["ratio_to_throughput_job"] = round(r[ph]["tok_s"] / raw, 2)
            r[ph]["generate_ratio_to_throughput_job"] = round(r[ph]["generate_tok_s"] / raw, 2)
        print(f"one EM round, {r['n_train']} train (budget {r['budget']}, {r['tries']} tries) + "
              f"{r['n_eval']} eval questions of {r['dataset']}: total {r['total_s']:.0f} s, "
              f"{r['n_accepted']} accepted")
        for ph in ("e_step", "evaluate"):
            x = r[ph]
            print(f"  {ph:9} {x['seconds']:7.1f} s {x['tokens']:7d} tok {x['tok_s']:7.1f} tok/s = "
                  f"{x['ratio_to_throughput_job']:.0%} of the throughput job's {raw:.1f}; generating alone "
                  f"{x['generate_seconds']:.1f} s, {x['generate_tok_s']:.1f} tok/s "
                  f"({x['generate_ratio_to_throughput_job']:.0%}), {x['generate_gflops']} GFLOP/s "
                  f"({x['gflops_ratio_to_throughput_job']:.0%} of the job's); "
                  f"{x['prompt_tokens_per_generated_token']} prompt tokens per generated token")
        print(f"  m_step    {r['m_step']['seconds']:7.1f} s; the round's process: {r['peak_rss_gb']} GB peak")
        print(f"  run_em's estimate of the E-step: factor {r['e_step_factor']['assumed']} assumed, "
              f"{r['e_step_factor']['measured']} measured")
    # peak resident memory of the throughput job's process (Linux reports kB); the round's is its own
    res["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2)
    # the goals: SmolLM2's (roofline 70 %, each round phase at 80 % of the job's tok/s); a model over 1B
    # parameters has the 1.5B goals instead (roofline 50 %, the round in 30 minutes, its peak memory 12 GB)
    big = n_params > 1e9
    goals = {"roofline_fraction": (0.50 if big else 0.70, res["roofline"]["fraction"], "min")}
    if args.round_questions and not big:
        goals |= {f"{ph}_ratio_to_throughput_job": (0.80, res["em_round"][ph]["ratio_to_throughput_job"],
                                                    "min") for ph in ("e_step", "evaluate")}
    if big:
        goals["peak_rss_gb"] = (12.0, res["em_round"]["peak_rss_gb"] if args.round_questions
                                else res["peak_rss_gb"], "max")
        if args.round_questions: goals["round_s"] = (1800.0, res["em_round"]["round_s"], "max")
    res["goals"] = {k: dict(goal=g, measured=m, met=(m >= g) if d == "min" else (m <= g),
                            short_by=round(max(0.0, g - m) if d == "min" else max(0.0, m - g), 3),
                            kind="at least" if d == "min" else "at most")
                    for k, (g, m, d) in goals.items()}
    for k, v in res["goals"].items():
        print(f"goal {k}: {v['kind']} {v['goal']}, measured {v['measured']}"
              + ("" if v["met"] else f", short by {v['short_by']}"))
    (out/f"{dev}-{name}.json").write_text(json.dumps(res, indent=2) + "\n")

if __name__ == "__main__":
    main()
