"""`kvcache.prefill` with `keep`: prompts split into pieces of different widths give the logits of one
plain forward."""
import pytest, torch

import em_tutorial.kvcache as kv
from em_tutorial.models import tiny_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    model, tok = tiny_model("llama", seed=0)
    with torch.no_grad():
        for p in model.parameters():
            # logits that depend on the whole context, so a misplaced position shows
            if p.dim() == 2: p.mul_(10)
    return model.eval(), tok


def rows(tok):
    """Long and short rows sharing a long head (a chat header), as `token_logprobs` prefills them:
    longest first."""
    head = tok("You are a careful assistant. Read the question, think it through step by step, then answer. ",
               add_special_tokens=False)["input_ids"]
    tails = ["Which of these is a metal, wood or iron or glass or paper? "
             "Think about conductivity and shine first.",
             "Water boils at what temperature at sea level, in degrees Celsius?", "Plants make food from",
             "Why", "Hi"]
    seqs = [head + tok(t, add_special_tokens=False)["input_ids"] for t in tails]
    return sorted(seqs, key=len, reverse=True) + [tok("Short row", add_special_tokens=False)["input_ids"]]


def plain_last(model, seq, k):
    "The last k positions' logits of `seq` alone (no padding, no cache): the reference."
    with torch.no_grad(): return model(torch.tensor([seq])).logits[0, -k:]


@pytest.mark.parametrize("budget", [10**6, 200, 64, 1])   # one piece; a few pieces; many; one row per piece
@pytest.mark.parametrize("share", [True, False])
def test_prefill_keep_over_pieces(tiny, monkeypatch, budget, share):
    model, tok = tiny
    seqs = rows(tok)
    K = len(seqs[0]) - 5   # longer than every row but the first two: the short pieces are narrower than K
    assert sum(len(s) < K for s in seqs) >= 3
    monkeypatch.setattr(kv, "PREFILL_TOKENS", budget)
    n_pieces = len(kv.pieces([len(s) for s in seqs], budget))
    assert (n_pieces == 1) == (budget == 10**6)
    with torch.no_grad():
        logits = kv.prefill(model, seqs, range(len(seqs)), pad=0, share=share, keep=K)[1]
    assert logits.shape == (len(seqs), K, model.config.vocab_size)
    for b, s in enumerate(seqs):
        k = min(K, len(s))   # a row's own positions; the rest are padding the caller never reads
        torch.testing.assert_close(logits[b, K - k:], plain_last(model, s, k), atol=2e-4, rtol=1e-4)
