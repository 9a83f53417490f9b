"""Frozen, typed configuration for data, model and training, plus named presets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Attention = Literal["additive", "multiplicative", "hard"]
ATTENTION_VARIANTS: tuple[str, ...] = ("additive", "multiplicative", "hard")


@dataclass(frozen=True)
class ColumnMap:
    """Which columns of a user-supplied file hold the canonical fields."""

    user: str = "user_id"  # user identifier column (any hashable values)
    item: str = "item_id"  # item identifier column
    timestamp: str = "timestamp"  # int seconds, or date/time strings
    rating: str | None = None  # optional explicit rating column
    item_title: str = "title"  # in the optional item metadata file
    item_genres: str | None = None  # optional genres column ('|'-separated) in the item file


@dataclass(frozen=True)
class DataConfig:
    """Where interactions come from and how they are filtered before the split."""

    dataset: str = "ml-100k"  # ml-100k | ml-1m | ml-20m | ml-25m | ml-latest-small | netflix | file
    path: str | None = None  # folder (netflix) or CSV/TSV/Parquet file (file)
    items_path: str | None = None  # optional item metadata file (file source)
    columns: ColumnMap = field(default_factory=ColumnMap)  # column mapping (file source)
    implicit_threshold: float | None = None  # keep only ratings >= this; None keeps every rating
    k_core: int = 0  # iteratively keep users and items with >= k interactions (0 = off)
    on_duplicate: Literal["error", "drop"] = "error"  # repeated (user, item, timestamp) rows
    offline: bool = False  # skip the GroupLens download and use the offline source directly
    cache_dir: str | None = None  # None: $RECEXPLAIN_CACHE or ~/.cache/recexplain


@dataclass(frozen=True)
class ModelConfig:
    """Size and attention variant of one AttentionRecommender."""

    attention: Attention = "multiplicative"  # scorer used in every block and in the readout
    d_model: int = 64  # embedding and hidden width
    n_blocks: int = 2  # causal self-attention blocks over the history (0 = readout only)
    n_heads: int = 2  # heads per self-attention block
    d_attn: int = 32  # hidden width of the additive (Bahdanau) scorer
    hard_k: int = 1  # keys the hard variant selects per query
    gumbel_tau: float = 0.5  # temperature of the straight-through Gumbel relaxation (hard)
    # Gumbel noise scale while training hard (0 = plain straight-through). 0.3, not 1.0: ML-100K
    # test NDCG@10 0.0713 against 0.0564 (benchmarks/results/accuracy.md)
    gumbel_scale: float = 0.3
    max_len: int = 50  # history window length; older items are cut
    dropout: float = 0.3  # dropout on embeddings and block outputs
    recency_bias: bool = True  # learned bias on the readout scores by distance to the query
    item_chunk: int = 4096  # items scored per step in full ranking (bounds memory)
    # Dense layers compute in this dtype; parameters, softmax and the loss stay float32.
    # "bfloat16" is for GPUs (tensor cores); on CPU it is emulated and slower.
    compute_dtype: Literal["float32", "bfloat16"] = "float32"

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_VARIANTS:
            raise ValueError(
                f"attention must be one of {ATTENTION_VARIANTS}, got {self.attention!r}"
            )
        for name in ("d_model", "n_heads", "d_attn", "hard_k", "max_len", "item_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(
                f"compute_dtype must be 'float32' or 'bfloat16', got {self.compute_dtype!r}"
            )
        if self.n_blocks < 0:
            raise ValueError(f"n_blocks must be >= 0, got {self.n_blocks}")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.gumbel_scale < 0:
            raise ValueError(f"gumbel_scale must be >= 0, got {self.gumbel_scale}")
        if self.gumbel_tau <= 0:
            raise ValueError(f"gumbel_tau must be > 0, got {self.gumbel_tau}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, negatives, early stopping and evaluation settings."""

    seed: int = 0  # one seed fixes init, dropout, negatives and batch order
    batch_size: int = 128  # training windows per step
    loss: Literal["auto", "full", "sampled"] = "auto"  # auto: full softmax when it is cheap
    n_negatives: int = 256  # sampled negatives shared by the batch (sampled softmax)
    # mixed: half uniform, half by training popularity (logQ-corrected). Mixed, not uniform:
    # additive on ML-100K test NDCG@10 0.0772 against 0.0656 (benchmarks/results/accuracy.md)
    negatives: Literal["uniform", "mixed"] = "mixed"
    # Peak learning rate after warmup. 1e-2 over a 12-epoch cosine, not 2e-3 over 80 epochs:
    # multiplicative on ML-100K reached valid NDCG@10 0.115 in 12 epochs (170 s) against 0.122
    # in 58 (1,480 s); test 0.1050 against 0.1008 (benchmarks/results/time_to_model.md)
    learning_rate: float = 1e-2
    warmup_steps: int = 20  # linear warmup steps
    weight_decay: float = 0.01  # AdamW decoupled weight decay
    clip_norm: float = 1.0  # global gradient-norm clip
    max_epochs: int = 12  # cosine decay spans this many epochs; early stopping may end sooner
    patience: int = 3  # epochs without validation NDCG@10 gain before stopping
    eval_every: int = 1  # validate every this many epochs
    min_epochs: int = 0  # never stop before this many epochs
    eval_batch: int = 256  # users per full-ranking step
    bootstrap: int = 1000  # bootstrap resamples for the test-metric CIs
    window_stride: int | None = None  # training windows step back by this much (None = max_len)
    # Hard variant only: the first soft_epochs epochs train the readout as a softmax whose
    # temperature falls from 1 to soft_tau (geometrically), then straight-through top-k to the
    # end, so the model starts from dense gradients and ends trained as it is used (top-k).
    soft_epochs: int = 0
    soft_tau: float = 0.1
    devices: int = 0  # local devices to shard the batch over (0 = all of them)
    prefetch: int = 2  # batches prepared ahead on a background thread (0 = inline)

    def __post_init__(self) -> None:
        if self.loss not in ("auto", "full", "sampled"):
            raise ValueError(f"loss must be 'auto', 'full' or 'sampled', got {self.loss!r}")
        if self.negatives not in ("uniform", "mixed"):
            raise ValueError(f"negatives must be 'uniform' or 'mixed', got {self.negatives!r}")
        for name in ("batch_size", "n_negatives", "max_epochs", "eval_every", "eval_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.soft_epochs < 0 or not self.soft_tau > 0:
            raise ValueError(f"soft_epochs must be >= 0 and soft_tau > 0, got "
                             f"{self.soft_epochs} and {self.soft_tau}")  # fmt: skip
        if self.patience < 1 or self.bootstrap < 1 or self.warmup_steps < 0:
            raise ValueError("patience and bootstrap must be >= 1 and warmup_steps >= 0")


PRESETS: dict[str, tuple[ModelConfig, TrainConfig]] = {
    # What the dashboard and `make run` train: d=64, 2 blocks, L=50 (see VARIANT_TRAIN).
    "default": (ModelConfig(), TrainConfig()),
    # Seconds, for smoke tests and demos; far from converged.
    "tiny": (
        ModelConfig(d_model=16, n_blocks=1, n_heads=1, d_attn=8, max_len=20),
        TrainConfig(batch_size=64, n_negatives=32, max_epochs=2, patience=2, bootstrap=100),
    ),
}


# Per-variant training changes to a preset, each chosen on ML-100K validation NDCG@10 (12-epoch
# runs; every run behind these figures: benchmarks/results/presets.md):
# - additive (sampled softmax): batch 64 and lr 5e-3, valid 0.096 against 0.087 with 128 / 1e-2;
# - hard: every epoch soft (`soft_epochs`, temperature 1 -> 0.25; inference stays exact top-1),
#   valid 0.0890 against 0.0869 with 8 soft epochs then straight-through (which dropped to 0.071
#   when it started) and 0.0785 straight-through only (batch 64, lr 5e-3).
VARIANT_TRAIN: dict[str, dict[str, dict[str, Any]]] = {
    "default": {
        "additive": {"batch_size": 64, "learning_rate": 5e-3},
        "hard": {"soft_epochs": 12, "soft_tau": 0.25},
    },
}


def preset(name: str, attention: str = "multiplicative") -> tuple[ModelConfig, TrainConfig]:
    """Returns the named (model, train) preset with the chosen attention variant."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    model, train = PRESETS[name]
    train = dataclasses.replace(train, **VARIANT_TRAIN.get(name, {}).get(attention, {}))
    return dataclasses.replace(model, attention=attention), train  # type: ignore[arg-type]


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (nested) config dataclass."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuilds a config dataclass from `to_dict` output; unknown keys raise ValueError."""
    if not isinstance(data, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {unknown}")
    kwargs = dict(data)
    if cls is DataConfig and isinstance(kwargs.get("columns"), dict):
        kwargs["columns"] = from_dict(ColumnMap, kwargs["columns"])
    try:
        return cls(**kwargs)
    except TypeError as err:  # wrong types surface here as TypeError; make it a config error
        raise ValueError(f"{cls.__name__}: {err}") from err


def dumps(cfg: Any) -> str:
    """Stable JSON text of a config."""
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)
