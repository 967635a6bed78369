"""Learning to reason in LLMs by Expectation Maximization (arXiv 2512.20169): derived, checked and implemented in notebooks

Modules:

- `em_tutorial.lvm`: The ELBO, EM and the three samplers (rejection sampling, STaR, PPS) as proposals, checked exactly on a tabular reasoner small enough to enumerate."""

__version__ = "0.1.0"
