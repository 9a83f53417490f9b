"""AttentionRecommender: causal self-attention blocks plus a candidate-specific attention readout.

For a history x_1..x_L (left-padded with item 0) and a candidate item c:

    h = Blocks(E[x] + P)                          causal self-attention, the chosen variant
    e_i(c) = score(W_q E[c], W_k h_i) - lam*(t-i)  the variant's scorer + learned recency decay
    alpha(c) = weights(e(c))                       softmax, or exact top-k for "hard"
    s(c) = sum_i alpha_i(c) (W_v h_i) . E[c] + b_c

alpha(c) is the explanation: one weight per history item, specific to the candidate. Training
scores every position t at once (the readout over i <= t is a running log-sum-exp, see
`attention.prefix_readout`), against the positive next item and shared sampled negatives.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from recexplain.config import ModelConfig
from recexplain.models import attention as att

Array = jax.Array


def _split(key: Array | None, n: int) -> list[Array | None]:
    return [None] * n if key is None else list(jax.random.split(key, n))


class SelfAttention(nnx.Module):
    """Multi-head causal self-attention whose scorer is the configured variant."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d, h = cfg.d_model, cfg.n_heads
        self.kind, self.heads, self.hard_k, self.tau = cfg.attention, h, cfg.hard_k, cfg.gumbel_tau
        width = h * cfg.d_attn if cfg.attention == "additive" else d
        self.q = nnx.Linear(d, width, use_bias=cfg.attention == "additive", rngs=rngs)
        self.k = nnx.Linear(d, width, use_bias=False, rngs=rngs)
        self.v = nnx.Linear(d, d, rngs=rngs)
        self.out = nnx.Linear(d, d, rngs=rngs)
        if cfg.attention == "additive":
            self.score_v = nnx.Param(jax.random.normal(rngs.params(), (h, cfg.d_attn)) * 0.1)
        self.deterministic = False

    def __call__(self, x: Array, mask: Array, *, key: Array | None = None) -> tuple[Array, Array]:
        """x: [B, L, D], mask: [B, L, L] -> ([B, L, D], weights [B, H, L, L])."""
        b, length, _ = x.shape
        heads = lambda t: t.reshape(b, length, self.heads, -1).swapaxes(1, 2)  # [B, H, L, .]
        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        if self.kind == "additive":
            scores = jax.vmap(att.additive_scores, in_axes=(1, 1, 0), out_axes=1)(
                q, k, self.score_v[...]
            )
        else:
            scores = att.multiplicative_scores(q, k)
        key = None if self.deterministic else key
        w = att.attention_weights(
            scores, mask[:, None], self.kind, k=self.hard_k, key=key, tau=self.tau
        )
        y = (w @ v).swapaxes(1, 2).reshape(b, length, -1)
        return self.out(y), w


class Block(nnx.Module):
    """Pre-LayerNorm transformer block: attention and a position-wise feed-forward layer."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d = cfg.d_model
        self.ln1, self.ln2 = nnx.LayerNorm(d, rngs=rngs), nnx.LayerNorm(d, rngs=rngs)
        self.attn = SelfAttention(cfg, rngs=rngs)
        self.ff1, self.ff2 = nnx.Linear(d, 2 * d, rngs=rngs), nnx.Linear(2 * d, d, rngs=rngs)
        self.drop = nnx.Dropout(cfg.dropout)

    def __call__(self, x: Array, mask: Array, *, key: Array | None = None) -> tuple[Array, Array]:
        k_att, k_d1, k_d2 = _split(key, 3)
        y, w = self.attn(self.ln1(x), mask, key=k_att)
        x = x + self.drop(y, rngs=k_d1)
        x = x + self.drop(self.ff2(jax.nn.gelu(self.ff1(self.ln2(x)))), rngs=k_d2)
        return x, w


class AttentionRecommender(nnx.Module):
    """Sequential recommender with a per-candidate attention readout (see module docstring)."""

    def __init__(self, cfg: ModelConfig, n_items: int, *, rngs: nnx.Rngs):
        """Args: cfg: model config; n_items: catalog size N (ids 1..N, 0 = padding)."""
        if n_items < 1:
            raise ValueError(f"n_items must be >= 1, got {n_items}")
        d = cfg.d_model
        self.cfg, self.n_items = cfg, n_items
        init = nnx.initializers.normal(d**-0.5)
        self.item_emb = nnx.Embed(n_items + 1, d, embedding_init=init, rngs=rngs)
        self.pos_emb = nnx.Embed(cfg.max_len, d, embedding_init=init, rngs=rngs)
        self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.n_blocks)])
        self.ln = nnx.LayerNorm(d, rngs=rngs)
        self.drop = nnx.Dropout(cfg.dropout)
        width = cfg.d_attn if cfg.attention == "additive" else d
        self.rq = nnx.Linear(d, width, use_bias=cfg.attention == "additive", rngs=rngs)
        self.rk = nnx.Linear(d, width, use_bias=False, rngs=rngs)
        self.rv = nnx.Linear(d, d, rngs=rngs)
        if cfg.attention == "additive":
            self.score_v = nnx.Param(jax.random.normal(rngs.params(), (cfg.d_attn,)) * 0.1)
        self.recency = nnx.Param(jnp.zeros(()))
        self.item_bias = nnx.Param(jnp.zeros((n_items + 1,)))
        self.deterministic = False

    # -- encoder ---------------------------------------------------------------------------
    def encode(self, seq: Array, *, key: Array | None = None) -> tuple[Array, list[Array]]:
        """seq: [B, L] int32 (left-padded) -> (h [B, L, D], per-block weights [B, H, L, L])."""
        if seq.shape[-1] != self.cfg.max_len:
            raise ValueError(f"seq length {seq.shape[-1]} != max_len {self.cfg.max_len}")
        valid = seq > 0  # [B, L]
        length = seq.shape[-1]
        causal = jnp.tril(jnp.ones((length, length), jnp.bool_))
        mask = causal[None] & valid[:, None, :] & valid[:, :, None]  # [B, L, L]
        keys = _split(key, len(self.blocks) + 1)
        x = self.item_emb(seq) + self.pos_emb(jnp.arange(length))[None]
        x = self.drop(x, rngs=keys[-1]) * valid[..., None]
        weights = []
        for block, k in zip(self.blocks, keys[:-1], strict=False):
            x, w = block(x, mask, key=k)
            weights.append(w)
        return self.ln(x) * valid[..., None], weights

    # -- readout -------------------------------------------------------------------------
    def _readout_parts(self, h: Array, cand: Array) -> tuple[Array, Array]:
        """Scores e [B, C, L] (recency folded in) and values g [B, C, L] for candidates.

        cand: [C] (shared by the batch) or [B, C].
        """
        e = self.item_emb(cand)  # [C, D] or [B, C, D]
        q, k = self.rq(e), self.rk(h)  # [(B,) C, A], [B, L, A]
        if e.ndim == 2:
            q, e = q[None], e[None]
        if self.cfg.attention == "additive":
            s = att.additive_scores(q, k, self.score_v[...])
        else:
            s = att.multiplicative_scores(q, k)
        g = e @ jnp.swapaxes(self.rv(h), -1, -2)  # [B, C, L]
        if self.cfg.recency_bias:
            # -lam * (t - i): the -lam * t part is constant over keys and cancels in softmax.
            s = s + self.recency[...] * jnp.arange(h.shape[1], dtype=jnp.float32)
        return s, jnp.broadcast_to(g, s.shape)

    def _weights(self, s: Array, mask: Array, key: Array | None) -> Array:
        cfg = self.cfg
        key = None if self.deterministic else key
        return att.attention_weights(
            s, mask, cfg.attention, k=cfg.hard_k, key=key, tau=cfg.gumbel_tau
        )

    def __call__(
        self, seq: Array, candidates: Array, *, key: Array | None = None
    ) -> tuple[Array, dict[str, Array]]:
        """Scores candidates after the whole history (the last position).

        Args:
          seq: [B, L] int32 history, left-padded with 0.
          candidates: [C] item ids shared by the batch, or [B, C].
          key: PRNG key for dropout / Gumbel noise (used only in train mode).
        Returns:
          scores [B, C]; aux with "readout" [B, C, L] weights over the history and
          "blocks" (list of [B, H, L, L] self-attention weights).
        """
        k_enc, k_read = _split(key, 2)
        h, block_w = self.encode(seq, key=k_enc)
        s, g = self._readout_parts(h, candidates)
        alpha = self._weights(s, (seq > 0)[:, None, :], k_read)
        scores = (alpha * g).sum(-1) + self.item_bias[...][candidates]
        return scores, {"readout": alpha, "blocks": block_w}

    def train_logits(
        self, seq: Array, targets: Array, negatives: Array, *, key: Array | None = None
    ) -> Array:
        """Logits at every position: column 0 the next item, then the shared negatives.

        Args:
          seq: [B, L] inputs; targets: [B, L] next items (0 = no target); negatives: [S].
        Returns:
          [B, L, 1 + S] logits (readout over the prefix i <= t at each position t).
        """
        k_enc, k_pos, k_neg = _split(key, 3)
        h, _ = self.encode(seq, key=k_enc)
        valid = seq > 0
        length = seq.shape[1]
        causal = jnp.tril(jnp.ones((length, length), jnp.bool_))[None] & valid[:, None, :]
        s_pos, g_pos = self._readout_parts(h, targets)  # [B, T, L]
        pos = (self._weights(s_pos, causal, k_pos) * g_pos).sum(-1)  # [B, T]
        s_neg, g_neg = self._readout_parts(h, negatives)  # [B, S, L]
        neg = self._prefix_negatives(s_neg, g_neg, valid[:, None, :], k_neg)  # [B, S, T]
        logits = jnp.concatenate([pos[..., None], jnp.swapaxes(neg, 1, 2)], axis=-1)
        bias = self.item_bias[...]
        neg_bias = jnp.broadcast_to(bias[negatives], pos.shape + negatives.shape)
        return logits + jnp.concatenate([bias[targets][..., None], neg_bias], axis=-1)

    def _prefix_negatives(self, s: Array, g: Array, mask: Array, key: Array | None) -> Array:
        mask = jnp.broadcast_to(mask, s.shape)
        if self.cfg.attention != "hard":
            return att.prefix_readout(s, g, mask)
        if self.deterministic or key is None:
            return att.prefix_hard_readout(s, g, mask, self.cfg.hard_k)
        s = s + jax.random.gumbel(key, s.shape, jnp.float32)
        hard = att.prefix_hard_readout(s, g, mask, self.cfg.hard_k)
        # Straight-through: forward = hard top-k; gradient w.r.t. the scores from the relaxation.
        soft = att.prefix_readout(s / self.cfg.gumbel_tau, jax.lax.stop_gradient(g), mask)
        return hard + soft - jax.lax.stop_gradient(soft)

    # -- full ranking ----------------------------------------------------------------------
    def item_chunk(self, batch: int, budget: int = 1 << 24) -> int:
        """Items scored at once so the largest readout tensor stays under `budget` elements."""
        per_item = (
            batch * self.cfg.max_len * (self.cfg.d_attn if self.cfg.attention == "additive" else 4)
        )
        return int(max(64, min(self.cfg.item_chunk, budget // max(per_item, 1))))

    def score_all(self, seq: Array) -> Array:
        """Scores of every item id 0..N after the history, computed in item chunks.

        Args:
          seq: [B, L] int32 histories.
        Returns:
          [B, N + 1] float32 scores (column 0 is padding; mask it).
        """
        b = seq.shape[0]
        chunk = self.item_chunk(b)
        n_chunks = -(-(self.n_items + 1) // chunk)
        ids = jnp.minimum(jnp.arange(n_chunks * chunk), self.n_items).reshape(n_chunks, chunk)
        h, _ = self.encode(seq)
        mask = (seq > 0)[:, None, :]
        bias = self.item_bias[...]

        def one(cand: Array) -> Array:  # [chunk] -> [B, chunk]
            s, g = self._readout_parts(h, cand)
            return (self._weights(s, mask, None) * g).sum(-1) + bias[cand]

        out = jax.lax.map(one, ids)  # [n_chunks, B, chunk]
        return out.transpose(1, 0, 2).reshape(b, -1)[:, : self.n_items + 1]


@partial(jax.jit, static_argnums=0)
def _score_all(graphdef: nnx.GraphDef, state: nnx.State, seq: Array) -> Array:
    return nnx.merge(graphdef, state).score_all(seq)


def make_scorer(model: AttentionRecommender):
    """A jitted (users, inputs [B, L]) -> scores [B, N + 1] function over the model as it is now.

    The model is split once, so calls pay no graph traversal; the mode (train/eval) is frozen at
    this call. Scorers of models with the same structure share one compiled function per shape.
    """
    graphdef, state = nnx.split(model)
    return lambda users, seq: _score_all(graphdef, state, jnp.asarray(seq, jnp.int32))
