"""recexplain: explainable attention recommenders (additive, multiplicative, hard)."""

__version__ = "0.1.0"
