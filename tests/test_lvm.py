"Mechanics of em_tutorial.lvm on random tabular reasoners (the notebook checks the toy settings)."
import math, pytest, torch
from em_tutorial.lvm import (TabularReasoner, elbo, kl, posterior_proposal, rejection_proposal, star_proposal,
                             pps_proposal, run_em_exact, toy_reasoner, log_mean_exp, sample_log_weights,
                             effective_sample_size, pps_iw_proposal)

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
        for prop in (posterior_proposal(m, y), rejection_proposal(m, y, 3), star_proposal(m, y),
                     pps_proposal(m, y)):
            assert torch.allclose(prop.weights.sum(-1), prop.acceptance, atol=1e-12)
            assert (prop.acceptance <= 1 + 1e-12).all() and (prop.weights >= 0).all()

@pytest.mark.parametrize("seed", range(3))
def test_exact_em_is_monotone(seed):
    m, y = random_reasoner(seed)
    run = run_em_exact(m, y, iterations=10, train_answers=True)
    assert all(b >= a - 1e-12 for a, b in zip(run.loglik, run.loglik[1:]))
    assert torch.equal(m.rationale_logits, random_reasoner(seed)[0].rationale_logits)  # input not modified

def test_bad_inputs():
    with pytest.raises(ValueError, match="same X, Z"):
        TabularReasoner(torch.zeros(2, 3), torch.zeros(3, 3, 2))
    with pytest.raises(ValueError, match="'help' or 'hurt'"): toy_reasoner("other")

def test_log_mean_exp_known_values():
    lw = torch.tensor([[0., math.log(3.)], [-1000., -1002.], [math.log(.5)]*2], dtype=torch.float64)
    want = torch.tensor([math.log(2.), -1000 + math.log((1 + math.exp(-2))/2), math.log(.5)],
                        dtype=torch.float64)
    assert torch.allclose(log_mean_exp(lw), want, atol=1e-12)
    assert torch.allclose(log_mean_exp(lw.T, dim=0), want, atol=1e-12)
    with pytest.raises(ValueError, match="at least one sample"): log_mean_exp(torch.zeros(4, 0))

def test_estimates_with_known_proposals():
    """q = posterior: every log-weight is log p(y*|x); q = prior: the log-weight is log π(y*|x,z); both
    lower bounds on average."""
    m, y = random_reasoner(0)
    with torch.no_grad():
        lp = m.log_marginal(y)
        _, lw = sample_log_weights(m, y, m.log_posterior(y), K=5, n=4, seed=1)
        assert lw.shape == (4, 5, 5) and torch.allclose(lw, lp[:, None].expand(4, -1, 5), atol=1e-12)
        assert torch.allclose(effective_sample_size(lw), torch.full((4, 5), 5., dtype=torch.float64),
                              atol=1e-9)
        z, lw = sample_log_weights(m, y, m.log_rationale(), K=8, n=2000,
                                   seed=torch.Generator().manual_seed(2))
        assert torch.allclose(lw, m.log_correct(y)[torch.arange(5)[:, None], z], atol=1e-12)
        est = log_mean_exp(lw)
        assert (est.mean(0) < lp + 3*est.std(0)/math.sqrt(2000)).all()
        assert torch.allclose(lw.mean((0, 2)), elbo(m, y, m.log_rationale()), atol=0.05)

def test_effective_sample_size_one_dominant_weight():
    assert torch.allclose(effective_sample_size(torch.tensor([0., -1e4, -1e4, -1e4])), torch.tensor(1.))
    # (1+3)²/(1+9)
    assert torch.allclose(effective_sample_size(torch.tensor([0., math.log(3.)])), torch.tensor(16/10))

def test_pps_iw_uniform_weights_when_hint_is_posterior():
    """β = 1 and no hint shift: q is the posterior, every weight equal, ESS = K, SIR returns the posterior
    at any K."""
    m, y = random_reasoner(1)
    ideal = TabularReasoner(m.rationale_logits.detach(), m.answer_logits.detach(), hint_lookahead=1.0)
    with torch.no_grad():
        post = ideal.log_posterior(y).exp()
        _, lw = sample_log_weights(ideal, y, ideal.log_hinted_proposal(y), K=7, n=3)
        assert torch.allclose(lw, lw[..., :1].expand_as(lw), atol=1e-12)
        assert torch.allclose(effective_sample_size(lw), torch.full((3, 5), 7., dtype=torch.float64),
                              atol=1e-9)
        prop = pps_iw_proposal(ideal, y, K=3, n=20_000)
        assert ((prop.weights - post).abs().max() < 0.015
                and torch.allclose(prop.acceptance, torch.ones(5, dtype=torch.float64)))

@pytest.mark.parametrize("seed", range(2))
def test_pps_iw_tends_to_posterior(seed):
    "K = 1 returns the hinted proposal; large K the posterior, far closer than PPS."
    m, y = random_reasoner(seed)
    with torch.no_grad():
        post, q = m.log_posterior(y).exp(), m.log_hinted_proposal(y).exp()
        tv = lambda p: 0.5*(p - post).abs().sum(-1)
        assert (pps_iw_proposal(m, y, K=1, n=20_000, seed=seed).weights - q).abs().max() < 0.015
        big = pps_iw_proposal(m, y, K=512, n=4000, seed=seed)
        pps = pps_proposal(m, y)
        assert tv(big.weights).max() < 0.05 < tv(pps.weights/pps.acceptance[:, None]).max()
        assert torch.equal(big.samples, torch.full((5,), 512., dtype=torch.float64))
        assert torch.equal(pps_iw_proposal(m, y, K=4, n=50, seed=7).weights,
                           pps_iw_proposal(m, y, K=4, n=50, seed=7).weights)

@pytest.mark.parametrize("K,n", [(0, 10), (-1, 10), (4, 0)])
def test_bad_sample_counts(K, n):
    m, y = random_reasoner(0)
    with pytest.raises(ValueError, match="must be at least 1"):
        sample_log_weights(m, y, m.log_rationale(), K=K, n=n)
    with pytest.raises(ValueError, match="must be at least 1"): pps_iw_proposal(m, y, K=K, n=n)
