"""AttentionRecommender: causal self-attention blocks plus a candidate-specific attention readout.

For a history x_1..x_L (left-padded with item 0) and a candidate item c, at position t:

    h = Blocks(E[x] + P)                               causal self-attention, chosen variant
    keys:   k_i = W_k E[x_i]          for history items i <= t,  and  k_ctx = W_c h_t
    values: v_i = W_v E[x_i],                                  and  v_ctx = U_c h_t
    e_i(c) = score(W_q E[c], k_i) - lam * (t - i)      the variant's scorer + recency decay
    alpha(c) = weights([e_1(c) .. e_t(c), e_ctx(c)])    softmax, or exact top-k for "hard"
    s(c) = E[c] . (sum_i alpha_i(c) v_i + alpha_ctx(c) v_ctx) + b_c

alpha(c) is the explanation: one weight per history item, specific to the candidate, plus the
weight the candidate puts on the sequence as a whole (the "context" key, the encoded state that
the self-attention blocks build). Item keys and values come from the items themselves, so a
weight on position i is about item x_i; the sequence's order and interactions enter through the
context key (and the recency decay). Because they depend on the item alone, the scores and
values of every candidate against every catalog item fit in [N + 1, N + 1] tables, so full
ranking, and a full softmax over the catalog while training, are gathers on catalogs of a few
thousand items. Training scores every position t at once (the readout over i <= t is a running
sum, see `prefix.prefix_readout`), against all items or shared sampled negatives.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from flax import nnx

from recexplain.config import ModelConfig
from recexplain.models import attention as att
from recexplain.models import prefix

Array = jax.Array


def _split(key: Array | None, n: int) -> list[Array | None]:
    return [None] * n if key is None else list(jax.random.split(key, n))


def _dense(cfg: ModelConfig, rngs: nnx.Rngs):
    """nnx.Linear computing in cfg.compute_dtype (parameters stay float32; see ModelConfig)."""
    return partial(nnx.Linear, dtype=jnp.dtype(cfg.compute_dtype), rngs=rngs)


class SelfAttention(nnx.Module):
    """Multi-head causal self-attention whose scorer is the configured variant."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d, h, dense = cfg.d_model, cfg.n_heads, _dense(cfg, rngs)
        self.kind, self.heads, self.hard_k = cfg.attention, h, cfg.hard_k
        self.tau, self.noise = cfg.gumbel_tau, cfg.gumbel_scale
        width = h * cfg.d_attn if cfg.attention == "additive" else d
        self.q = dense(d, width, use_bias=cfg.attention == "additive")
        self.k = dense(d, width, use_bias=False)
        self.v = dense(d, d)
        self.out = dense(d, d)
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
            scores, mask[:, None], self.kind, k=self.hard_k, key=key, tau=self.tau, noise=self.noise
        )
        y = (w @ v).swapaxes(1, 2).reshape(b, length, -1)
        return self.out(y), w


class Block(nnx.Module):
    """Pre-LayerNorm transformer block: attention and a position-wise feed-forward layer."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        d, dense = cfg.d_model, _dense(cfg, rngs)
        self.ln1, self.ln2 = nnx.LayerNorm(d, rngs=rngs), nnx.LayerNorm(d, rngs=rngs)
        self.attn = SelfAttention(cfg, rngs=rngs)
        self.ff1, self.ff2 = dense(d, 2 * d), dense(2 * d, d)
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
        additive, dense = cfg.attention == "additive", _dense(cfg, rngs)
        width = cfg.d_attn if additive else d
        self.rq = dense(d, width, use_bias=additive)  # candidate -> query
        self.rk = dense(d, width, use_bias=False)  # history item -> key
        self.rv = dense(d, d, use_bias=False)  # history item -> value
        self.ck = dense(d, width, use_bias=False)  # sequence state -> key
        self.cv = dense(d, d, use_bias=False)  # sequence state -> value
        if additive:
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

    # -- readout pieces ----------------------------------------------------------------------
    def _pair(self, q: Array, k: Array) -> Array:
        """The variant's scorer, pairwise: q [..., C, A] x k [..., T, A] -> [..., C, T]."""
        if self.cfg.attention == "additive":
            return att.additive_scores(q, k, self.score_v[...])
        return att.multiplicative_scores(q, k)

    def _diag(self, q: Array, k: Array) -> Array:
        """The variant's scorer, elementwise over matching rows: [..., A] x [..., A] -> [...]."""
        if self.cfg.attention == "additive":
            return jnp.tanh(q + k) @ self.score_v[...]
        return (q * k).sum(-1) / jnp.sqrt(jnp.float32(q.shape[-1]))

    def _item_parts(self, seq: Array, cand: Array) -> tuple[Array, Array]:
        """History-item keys: scores and values [B, C, L] for candidates [C] or [B, C].

        Keys and values of position i are built from item x_i alone (not from the encoded
        sequence or its position), so a weight on position i is a statement about item x_i;
        order enters through the recency term and the context key.
        """
        if cand.ndim == 1 and self._tables_pay(seq):
            s_item, g_item = self._item_tables_for(cand)
            return self._gather(s_item, g_item, seq)
        e = self.item_emb(cand)  # [C, D] or [B, C, D]
        hist = self.item_emb(seq)  # [B, L, D]
        q = self.rq(e)
        if e.ndim == 2:
            q, e = q[None], e[None]
        s = self._pair(q, self.rk(hist))  # [B, C, L]
        g = e @ jnp.swapaxes(self.rv(hist), -1, -2)  # [B, C, L]
        return self._recency(s), jnp.broadcast_to(g, s.shape)

    def _tables_pay(self, seq: Array) -> bool:
        """Candidate x catalog tables cost C * (N + 1) pairs; direct scoring C * B * L."""
        return self.n_items + 1 < seq.shape[0] * seq.shape[1]

    def _item_tables_for(self, cand: Array) -> tuple[Array, Array]:
        """Scores and values of candidates [C] against every catalog item: [C, N + 1] each."""
        table = self.item_emb.embedding[...]  # [N + 1, D]
        e = self.item_emb(cand)
        s_item = self._pair(self.rq(e), self.rk(table))
        return s_item, e @ self.rv(table).T

    def _gather(self, s_item: Array, g_item: Array, seq: Array) -> tuple[Array, Array]:
        """[C, N + 1] tables at the history ids -> scores, values [B, C, L]."""
        s = jnp.take(s_item, seq, axis=1).transpose(1, 0, 2)
        g = jnp.take(g_item, seq, axis=1).transpose(1, 0, 2)
        return self._recency(s), g

    def _recency(self, s: Array) -> Array:
        if not self.cfg.recency_bias:
            return s
        # -lam * (t - i): the -lam * t part is constant over keys and cancels in softmax.
        pos = jnp.arange(s.shape[-1], dtype=jnp.float32)[None, None, :]
        return s + self.recency[...] * pos

    def _context_last(self, h_last: Array, cand: Array) -> tuple[Array, Array]:
        """Context key (the encoded sequence state) at the last position: [B, C] each."""
        e = self.item_emb(cand)
        q = self.rq(e)
        if e.ndim == 2:
            q, e = q[None], e[None]
        s = self._pair(q, self.ck(h_last)[:, None, :])[..., 0]  # [B, C]
        g = (e @ self.cv(h_last)[:, :, None])[..., 0]
        return s, g

    def _bias(self, cand: Array) -> Array:
        """Item bias as [1, C] for shared candidates or [B, C] for per-row ones."""
        bias = self.item_bias[...][cand]
        return bias[None] if cand.ndim == 1 else bias

    def _weights(self, s: Array, mask: Array, key: Array | None, temperature=None) -> Array:
        cfg = self.cfg
        key = None if self.deterministic else key
        if temperature is not None and key is not None:  # hard variant's soft phase
            return att.softmax_weights(s / temperature, mask)
        return att.attention_weights(
            s,
            mask,
            cfg.attention,
            k=cfg.hard_k,
            key=key,
            tau=cfg.gumbel_tau,
            noise=cfg.gumbel_scale,
        )

    @staticmethod
    def _with_context(s, s_ctx, mask):
        """Scores and mask over [history keys..., context key] (the context key is never masked)."""
        s_all = jnp.concatenate([s, s_ctx[..., None]], axis=-1)
        m_all = jnp.concatenate(
            [jnp.broadcast_to(mask, s.shape), jnp.ones_like(s_ctx, bool)[..., None]], axis=-1
        )
        return s_all, m_all

    def _readout(self, s, g, s_ctx, g_ctx, mask, key, temperature=None):
        """Attention over [history keys..., context key]: (scores, history w, context w)."""
        w = self._weights(*self._with_context(s, s_ctx, mask), key, temperature)
        out = (w[..., :-1] * g).sum(-1) + w[..., -1] * g_ctx
        return out, w[..., :-1], w[..., -1]

    def _readout_value(self, s, g, s_ctx, g_ctx, mask) -> Array:
        """`_readout`'s output alone, at inference (exact hard top-1 reads one value)."""
        if self.cfg.attention != "hard" or self.cfg.hard_k != 1:
            return self._readout(s, g, s_ctx, g_ctx, mask, None)[0]
        idx = att.top1_index(*self._with_context(s, s_ctx, mask))
        g_all = jnp.concatenate([jnp.broadcast_to(g, s.shape), g_ctx[..., None]], axis=-1)
        return jnp.take_along_axis(g_all, idx[..., None], axis=-1)[..., 0]

    # -- scoring -----------------------------------------------------------------------------
    def __call__(
        self, seq: Array, candidates: Array, *, key: Array | None = None
    ) -> tuple[Array, dict[str, Array]]:
        """Scores candidates after the whole history (the last position).

        Args:
          seq: [B, L] int32 history, left-padded with 0.
          candidates: [C] item ids shared by the batch, or [B, C].
          key: PRNG key for dropout / Gumbel noise (used only in train mode).
        Returns:
          scores [B, C]; aux with "readout" [B, C, L] weights on the history items, "context"
          [B, C] weight on the sequence state (readout + context sum to 1), and "blocks" (list of
          [B, H, L, L] self-attention weights).
        """
        k_enc, k_read = _split(key, 2)
        h, block_w = self.encode(seq, key=k_enc)
        s, g = self._item_parts(seq, candidates)
        s_ctx, g_ctx = self._context_last(h[:, -1], candidates)
        out, w_hist, w_ctx = self._readout(s, g, s_ctx, g_ctx, (seq > 0)[:, None, :], k_read)
        scores = out + self._bias(candidates)
        return scores, {"readout": w_hist, "context": w_ctx, "blocks": block_w}

    def train_logits(
        self,
        seq: Array,
        targets: Array,
        negatives: Array,
        *,
        key: Array | None = None,
        temperature: Array | None = None,
    ) -> Array:
        """Time-major logits at every position: column 0 the next item, then the negatives.

        Args:
          seq: [B, L] inputs; targets: [B, L] next items (0 = no target); negatives: [S].
          key: dropout / Gumbel noise key (train mode). temperature: hard variant only: train
            the readout as a softmax of scores / temperature (`TrainConfig.soft_epochs`).
        Returns:
          [L, B, 1 + S] logits (readout over the prefix i <= t at each position t), time-major
          like every training readout (see `prefix`).
        """
        k_enc, k_pos, k_neg = _split(key, 3)
        h, _ = self.encode(seq, key=k_enc)
        valid = seq > 0
        length = seq.shape[1]
        # positives: one candidate per position, explicit causal attention [B, T, L + 1]
        causal = jnp.tril(jnp.ones((length, length), jnp.bool_))[None] & valid[:, None, :]
        s_pos, g_pos = self._item_parts(seq, targets)  # [B, T, L]
        e_pos = self.item_emb(targets)
        s_cp = self._diag(self.rq(e_pos), self.ck(h))  # [B, T]
        g_cp = (e_pos * self.cv(h)).sum(-1)
        pos, _, _ = self._readout(s_pos, g_pos, s_cp, g_cp, causal, k_pos, temperature)
        pos = (pos + self.item_bias[...][targets]).T  # [T, B]
        neg = self._prefix_logits(seq, h, negatives, k_neg, temperature)  # [T, B, S]
        return jnp.concatenate([pos[..., None], neg], axis=-1)

    def train_logits_full(
        self, seq: Array, *, key: Array | None = None, temperature: Array | None = None
    ) -> Array:
        """Time-major logits of every item at every position (a full softmax over the catalog).

        Args:
          seq: [B, L] inputs; key, temperature: see `train_logits`.
        Returns:
          [L, B, N + 1] logits (readout over the prefix i <= t at each position t; column 0
          is the padding id and must be masked by the loss).
        """
        k_enc, k_items = _split(key, 2)
        h, _ = self.encode(seq, key=k_enc)
        return self._prefix_logits(seq, h, jnp.arange(self.n_items + 1), k_items, temperature)

    def _prefix_logits(self, seq, h, cand, key, temperature=None) -> Array:
        """Shared candidates [C] at every position: [T, B, C] logits, item bias included."""
        seq, h = seq.T, jnp.swapaxes(h, 0, 1)  # time-major: [L, B], [T, B, D] (small copies)
        s, g = self._history_parts(seq, cand)  # [L, B, C]
        e = self.item_emb(cand)
        s_ctx = self._pair(self.ck(h), self.rq(e)[None])  # [T, B, C]
        g_ctx = jnp.einsum("tbd,cd->tbc", self.cv(h), e)
        out = self._prefix(s, g, (seq > 0)[..., None], s_ctx, g_ctx, key, temperature)
        return out + self.item_bias[...][cand][None, None]

    def _history_parts(self, seq: Array, cand: Array) -> tuple[Array, Array]:
        """Scores (recency included) and values of shared candidates [C] against each history
        item of time-major inputs [L, B]: [L, B, C] each. A [N + 1, C] table read by history id
        when the catalog is smaller than the batch's history slots, else computed directly."""
        e = self.item_emb(cand)
        q = self.rq(e)
        if self.n_items + 1 < seq.shape[0] * seq.shape[1]:
            table = self.item_emb.embedding[...]
            s = jnp.take(self._pair(self.rk(table), q), seq, axis=0)
            g = jnp.take(self.rv(table) @ e.T, seq, axis=0)
        else:
            hist = self.item_emb(seq)
            s = self._pair(self.rk(hist), q[None])
            g = jnp.einsum("lbd,cd->lbc", self.rv(hist), e)
        if self.cfg.recency_bias:  # -lam * (t - i): the -lam * t part cancels in the softmax
            s = s + self.recency[...] * jnp.arange(seq.shape[0], dtype=jnp.float32)[:, None, None]
        return s, g

    def _prefix(self, s, g, mask, s_ctx, g_ctx, key: Array | None, temperature=None) -> Array:
        """[L, B, C] keys -> [T, B, C] readouts: softmax, or hard top-k (straight-through; in
        the hard variant's soft phase, a softmax of scores / temperature)."""
        if self.cfg.attention != "hard":
            return prefix.prefix_readout(s, g, mask, s_ctx, g_ctx)
        k = self.cfg.hard_k
        if self.deterministic or key is None:
            return prefix.prefix_hard_readout(s, g, mask, k, s_ctx, g_ctx)
        if temperature is not None:
            return prefix.prefix_readout(s / temperature, g, mask, s_ctx / temperature, g_ctx)
        k_items, k_ctx, noise = *jax.random.split(key), self.cfg.gumbel_scale
        s = s + noise * prefix.gumbel(k_items, s.shape)
        s_ctx = s_ctx + noise * prefix.gumbel(k_ctx, s_ctx.shape)
        hard = prefix.prefix_hard_readout(s, g, mask, k, s_ctx, g_ctx)
        # Straight-through: forward = hard top-k; gradient w.r.t. the scores from the relaxation.
        tau, sg = self.cfg.gumbel_tau, jax.lax.stop_gradient
        soft = prefix.prefix_readout(s / tau, sg(g), mask, s_ctx / tau, sg(g_ctx))
        return hard + soft - sg(soft)

    # -- full ranking ----------------------------------------------------------------------
    def item_chunk(self, batch: int, budget: int = 1 << 24) -> int:
        """Items scored at once so the largest readout tensor stays under `budget` elements."""
        per_item = batch * self.cfg.max_len
        per_item *= self.cfg.d_attn if self.cfg.attention == "additive" else 4
        return int(max(64, min(self.cfg.item_chunk, budget // max(per_item, 1))))

    def item_tables(self, chunk: int = 128) -> dict[str, Array] | None:
        """Readout scores and values of every candidate against every catalog item, or None.

        Item keys and values depend on the item alone, so [N + 1, N + 1] tables computed once
        per model turn full ranking into gathers. None when they would exceed 2^26 entries
        (large catalogs score directly, in chunks).
        """
        n = self.n_items + 1
        if n * n > 1 << 26:
            return None
        ids = jnp.minimum(jnp.arange(-(-n // chunk) * chunk), n - 1).reshape(-1, chunk)
        s_item, g_item = jax.lax.map(self._item_tables_for, ids)  # [n_chunks, chunk, N + 1]
        return {"s_item": s_item.reshape(-1, n)[:n], "g_item": g_item.reshape(-1, n)[:n]}

    def score_all(self, seq: Array, tables: dict[str, Array] | None = None) -> Array:
        """Scores of every item id 0..N after the history, computed in item chunks.

        Args:
          seq: [B, L] int32 histories.
          tables: optional `item_tables()` (computed once per model, reused across calls).
        Returns:
          [B, N + 1] float32 scores (column 0 is padding; mask it).
        """
        b = seq.shape[0]
        chunk = self.item_chunk(b)
        n_chunks = -(-(self.n_items + 1) // chunk)
        ids = jnp.minimum(jnp.arange(n_chunks * chunk), self.n_items).reshape(n_chunks, chunk)
        h, _ = self.encode(seq)
        mask = (seq > 0)[:, None, :]

        def one(cand: Array) -> Array:  # [chunk] -> [B, chunk]
            if tables is None:
                s, g = self._item_parts(seq, cand)
            else:
                s, g = self._gather(tables["s_item"][cand], tables["g_item"][cand], seq)
            s_ctx, g_ctx = self._context_last(h[:, -1], cand)
            return self._readout_value(s, g, s_ctx, g_ctx, mask) + self._bias(cand)

        out = jax.lax.map(one, ids)  # [n_chunks, B, chunk]
        return out.transpose(1, 0, 2).reshape(b, -1)[:, : self.n_items + 1]


@partial(jax.jit, static_argnums=0)
def _score_all(graphdef: nnx.GraphDef, state: nnx.State, tables, seq: Array) -> Array:
    return nnx.merge(graphdef, state).score_all(seq, tables)


@partial(jax.jit, static_argnums=0)
def _item_tables(graphdef: nnx.GraphDef, state: nnx.State):
    return nnx.merge(graphdef, state).item_tables()


def make_scorer(model: AttentionRecommender):
    """A jitted (users, inputs [B, L]) -> scores [B, N + 1] function over the model as it is now.

    The model is split once, so calls pay no graph traversal; the mode (train/eval) is frozen at
    this call; the item tables are computed once here. Scorers of models with the same
    structure share one compiled function per shape.
    """
    graphdef, state = nnx.split(model)
    tables = _item_tables(graphdef, state)
    return lambda users, seq: _score_all(graphdef, state, tables, jnp.asarray(seq, jnp.int32))
