"Mechanics of em_tutorial.lvm on random tabular reasoners (the notebook checks the toy settings)."
import pytest, torch
from em_tutorial.lvm import (TabularReasoner, elbo, kl, posterior_proposal, rejection_proposal, star_proposal,
                             pps_proposal, run_em_exact, toy_reasoner)

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    "Tiny tensors: extra torch threads only add contention."
    n = torch.get_num_threads(); torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

def random_reasoner(seed, X=5, Z=6, Y=3):
    g = torch.Generator().manual_seed(seed)
    r = 2*torch.randn(X, Z, generator=g, dtype=torch.float64)
    a = 2*torch.randn(X, Z, Y, generator=g, dtype=torch.float64)
    return (TabularReasoner(r, a, hint_lookahead=1.5, hint_bias=torch.randn(Z, generator=g), hint_copy=2.0),
            torch.randint(0, Y, (X,), generator=g))

@pytest.mark.parametrize("seed", range(5))
def test_elbo_identity_and_proposals(seed):
    m, y = random_reasoner(seed)
    with torch.no_grad():
        lp, post = m.log_marginal(y), m.log_posterior(y)
        for lq in (m.log_rationale(), m.log_hinted_proposal(y), post):
            assert torch.allclose(elbo(m, y, lq) + kl(lq, post), lp, atol=1e-9)
        for prop in (posterior_proposal(m, y), rejection_proposal(m, y, 3), star_proposal(m, y), pps_proposal(m, y)):
            assert torch.allclose(prop.weights.sum(-1), prop.acceptance, atol=1e-12)
            assert (prop.acceptance <= 1 + 1e-12).all() and (prop.weights >= 0).all()

@pytest.mark.parametrize("seed", range(3))
def test_exact_em_is_monotone(seed):
    m, y = random_reasoner(seed)
    run = run_em_exact(m, y, iterations=10, train_answers=True)
    assert all(b >= a - 1e-12 for a, b in zip(run.loglik, run.loglik[1:]))
    assert torch.equal(m.rationale_logits, random_reasoner(seed)[0].rationale_logits)  # input not modified

def test_bad_inputs():
    with pytest.raises(ValueError, match="same X, Z"): TabularReasoner(torch.zeros(2, 3), torch.zeros(3, 3, 2))
    with pytest.raises(ValueError, match="'help' or 'hurt'"): toy_reasoner("other")
