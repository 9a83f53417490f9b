"""Data-parallel training over two (forced) CPU devices matches single-device training."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = r"""
import dataclasses, json
import jax
from recexplain.config import ModelConfig, TrainConfig
from recexplain.data import synthetic_planted
from recexplain.split import leave_last_out
from recexplain.training import fit
assert jax.local_device_count() == 2, jax.devices()
split = leave_last_out(synthetic_planted(n_users=200, n_items=60, length=20)[0])
model = ModelConfig(d_model=16, n_blocks=1, n_heads=2, d_attn=8, max_len=12, dropout=0.0)
cfg = TrainConfig(batch_size=32, n_negatives=16, max_epochs=3, eval_batch=64, warmup_steps=2)
out = {}
for devices in (1, 2):
    res = fit(split, model, dataclasses.replace(cfg, devices=devices), verbose=False)
    out[devices] = [[r["loss"], r["valid_ndcg@10"], r["compiles"]] for r in res.history]
print(json.dumps(out))
"""


def test_two_device_training_gives_the_same_curve():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=600, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    curves = json.loads(proc.stdout.strip().splitlines()[-1])
    single, sharded = curves["1"], curves["2"]
    for (l1, v1, _), (l2, v2, _c2) in zip(single, sharded, strict=True):
        assert abs(l1 - l2) < 1e-3 * max(1.0, abs(l1)), (single, sharded)
        assert abs(v1 - v2) < 0.02
    assert [c for _, _, c in sharded[1:]] == [0] * (len(sharded) - 1)
