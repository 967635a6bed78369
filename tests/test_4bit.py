"""4-bit NF4 weights read in one layout on every CPU: the merged sampling copy equals the
adapter-attached model even after bitsandbytes' AVX-512 repacking (replayed here with its own packer, so both
layouts are tested on either kind of CPU)."""
import tempfile
import pytest, torch

pytest.importorskip("bitsandbytes")
from bitsandbytes.functional import _convert_weight_packed_for_cpu, has_avx512bf16
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

import em_tutorial.generate as G
import em_tutorial.models as M
from em_tutorial.generate import merged_adapter
from em_tutorial.generate import dequantized_merged
from em_tutorial.models import add_lora, tiny_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def folder():
    tiny, tok = tiny_model("llama")
    d = tempfile.mkdtemp(); tiny.save_pretrained(d); tok.save_pretrained(d)
    return d, tok


def models(folder):
    "(4-bit + LoRA, the same unquantised + the same LoRA), eval mode; the adapter changes the model."
    d, _ = folder
    nf4 = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                             bnb_4bit_compute_dtype=torch.float32)
    q4 = add_lora(AutoModelForCausalLM.from_pretrained(d, quantization_config=nf4, device_map="cpu"),
                  verbose=False)
    full = add_lora(AutoModelForCausalLM.from_pretrained(d, device_map="cpu"), verbose=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, w in q4.named_parameters():
            if "lora_B" in name: w.copy_(torch.randn(w.shape, generator=g) * 0.5)
        full.load_state_dict({k: v for k, v in q4.state_dict().items() if "lora_" in k}, strict=False)
    return q4.eval(), full.eval()


def logits(model, tok):
    batch = tok(["Hello there, how", "The answer is"], return_tensors="pt", padding=True)
    with torch.no_grad(): return model(**batch).logits


def repack_as_avx512_does(model) -> int:
    "What `Linear4bit.forward` does to every layer at its first no-grad forward on a CPU with AVX-512 bf16."
    layers = M._bnb_4bit_layers(model)
    for m in layers: m.weight.data, m.weight.quant_state = _convert_weight_packed_for_cpu(
        m.weight.data, m.weight.quant_state)
    return len(layers)


def test_merged_copy_after_avx512_repacking(folder):
    q4, full = models(folder)
    exact, before = logits(full, folder[1]), logits(dequantized_merged(q4), folder[1])
    assert (before - exact).abs().max() < 0.2                                   # NF4's own error
    assert repack_as_avx512_does(q4) == 14
    after = logits(dequantized_merged(q4), folder[1])
    assert (after - exact).abs().max() < 0.2, "the merged copy misreads repacked weights"
    assert not any(m.weight.quant_state.packing_format_for_cpu for m in M._bnb_4bit_layers(q4))
    # attached and merged: one model
    torch.testing.assert_close(logits(q4, folder[1]), after, atol=1e-4, rtol=1e-4)


def test_no_layer_repacks_at_a_forward(folder):
    """add_lora (and load_model) switch bitsandbytes' repacking off; on an AVX-512 bf16 CPU a no-grad
    forward would repack."""
    q4, _ = models(folder)
    assert all(m.support_avx512bf16_for_cpu is False for m in M._bnb_4bit_layers(q4))
    logits(q4, folder[1])
    assert not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False)
                   for m in M._bnb_4bit_layers(q4)), \
        f"repacked at a forward (avx512_bf16 here: {has_avx512bf16()})"


def test_a_misread_layout_falls_back_to_the_attached_model(folder, monkeypatch, capsys):
    q4, _ = models(folder)
    read = G._dequantize
    # a layout read wrong
    monkeypatch.setattr(G, "_dequantize", lambda layer, dtype: read(layer, dtype).flip(0))
    with pytest.raises(G.LayoutMismatch, match="differs from its 4-bit forward"): dequantized_merged(q4)
    with merged_adapter(q4) as m: assert m is q4
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "Sampling with the adapter attached instead" in out
