"""Learning to reason in LLMs by Expectation Maximization (arXiv 2512.20169), derived and checked in notebooks"""

__version__ = "0.1.0"
