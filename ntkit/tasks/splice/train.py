"""Training a splice model on labelled windows.

One site per ~1,700 bases: plain cross-entropy is minimised by predicting "none" everywhere.
The loss therefore weights acceptor and donor positions (``site_weight``) and can focus on the
hard positions (``loss="focal"``, Lin et al. 2017: ``(1 - p_t)^gamma`` times the weighted
cross-entropy); training windows are best built with ``min_sites >= 1``. With validation windows
(held-out genes of the training chromosomes), the model is evaluated every ``eval_every`` steps
and the weights with the best mean acceptor/donor PR-AUC are kept; training stops after
``patience`` evaluations without improvement. Context bases (label ``CONTEXT``) are ignored.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from ntkit.runtime import engine
from ntkit.runtime.training import train_loop
from ntkit.tasks.options import SpliceTrainConfig  # noqa: F401  (re-exported)
from ntkit.tasks.segmentation import focal_loss
from ntkit.tasks.splice.data import CONTEXT, SpliceWindows
from ntkit.tasks.splice.metrics import splice_metrics
from ntkit.tasks.splice.model import SpliceModel, _encode
from ntkit.tasks.splice.predict import predict_windows


def splice_loss(logits: torch.Tensor, y: torch.Tensor, cfg: SpliceTrainConfig) -> torch.Tensor:
    """Weighted (focal) cross-entropy over the labelled positions (``y >= 0``): SegmentNT's loss
    (``segmentation.focal_loss``) with three classes, acceptor and donor weighted ``site_weight``."""
    weight = torch.tensor([1.0, cfg.site_weight, cfg.site_weight])
    return focal_loss(logits, y, y >= 0, cfg.focal_gamma if cfg.loss == "focal" else 0.0, weight)


def _targets(data: SpliceWindows, idx, n2t: torch.Tensor) -> torch.Tensor:
    y = torch.full(n2t.shape, -100, dtype=torch.long, device=n2t.device)
    for b, k in enumerate(idx):
        n = min(len(data.labels[k]), n2t.shape[1])
        lab = torch.as_tensor(data.labels[k][:n].astype(np.int64), device=n2t.device)
        y[b, :n] = torch.where(lab == CONTEXT, -100, lab)
    y[n2t < 0] = -100
    return y


def train_splice(base, data: SpliceWindows, cfg: SpliceTrainConfig | None = None, *, valid: SpliceWindows | None = None,
                 runtime=None) -> SpliceModel:
    """A splice model trained on ``data`` with the shared loop (``ntkit.runtime.training``): weighted /
    focal loss, validation PR-AUC every ``eval_every`` steps with early stopping and the best
    weights kept, a time budget; bf16 autocast on GPUs that support it. Seeded by ``cfg.seed``."""
    rt = engine.as_runtime(runtime)
    cfg = cfg or SpliceTrainConfig()
    device = torch.device(rt.device) if rt.device is not None else next(base.parameters()).device
    if cfg.method == "full":
        base = copy.deepcopy(base)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        model = SpliceModel(base, cfg.method, head=cfg.head, channels=cfg.channels).to(device).train()
        tok = base.tokenizer
        rng = np.random.default_rng(cfg.seed)

        def batches(epoch: int):
            perm = rng.permutation(len(data))
            for i in range(0, len(data), cfg.batch_size):
                idx = perm[i : i + cfg.batch_size]
                ids, mask, n2t, slot, onehot, _ = _encode(tok, [data.sequences[k] for k in idx], device)
                yield (ids, mask, n2t, slot, onehot), _targets(data, idx, n2t)

        def step_loss(m, batch) -> torch.Tensor:
            inputs, y = batch
            return splice_loss(m(*inputs), y, cfg)

        def evaluate(m) -> float:
            r = splice_metrics(valid.labels, predict_windows(m, valid, runtime=engine.Runtime(device=device)))
            return float(np.nanmean([r["acceptor_prauc"], r["donor_prauc"]]))

        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        res = train_loop(model, [p for p in model.parameters() if p.requires_grad], batches, step_loss, lr=cfg.lr, epochs=cfg.epochs,
                         max_minutes=cfg.max_minutes, eval_every=cfg.eval_every, patience=cfg.patience,
                         evaluate=evaluate if valid is not None else None, autocast_dtype=torch.bfloat16 if bf16 else None,
                         device=device, progress=rt.progress, desc=f"splice ({cfg.method}, {cfg.head})",
                         total_steps=cfg.epochs * math.ceil(len(data) / cfg.batch_size))
    model.best_valid_prauc, model.steps = res.best_score, res.steps
    return model.eval()
