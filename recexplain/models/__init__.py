"""Attention scorers and the AttentionRecommender model."""

from recexplain.models.attention import (
    additive_scores,
    attention_weights,
    hard_weights,
    multiplicative_scores,
    softmax_weights,
)
from recexplain.models.recommender import AttentionRecommender

__all__ = [
    "AttentionRecommender",
    "additive_scores",
    "attention_weights",
    "hard_weights",
    "multiplicative_scores",
    "softmax_weights",
]
