"""Training a splice model on labelled windows."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from .data import CLASSES, SpliceWindows
from .model import SpliceModel, _encode


@dataclass
class SpliceTrainConfig:
    method: Literal["ia3", "full"] = "ia3"
    lr: float = 3e-3
    epochs: int = 3
    batch_size: int = 4
    max_minutes: float | None = None
    site_weight: float = 1.0  # cross-entropy weight of acceptor/donor vs none (SpliceAI: 1; >1 helps short CPU runs)
    seed: int = 0

    def __post_init__(self) -> None:
        from ..config import check_fields

        check_fields(self)


def train_splice(base, data: SpliceWindows, cfg: SpliceTrainConfig | None = None, device=None, progress: bool = True) -> SpliceModel:
    import copy
    import time

    cfg = cfg or SpliceTrainConfig()
    device = device or next(base.parameters()).device
    if cfg.method == "full":
        base = copy.deepcopy(base)
    torch.manual_seed(cfg.seed)
    model = SpliceModel(base, cfg.method).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    tok = base.tokenizer
    rng = np.random.default_rng(cfg.seed)
    t0 = time.time()
    steps = cfg.epochs * math.ceil(len(data) / cfg.batch_size)
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, unit="batch", desc=f"splice ({cfg.method})", dynamic_ncols=True, disable=not progress)
    done = False
    for _ in range(cfg.epochs):
        perm = rng.permutation(len(data))
        for i in range(0, len(perm), cfg.batch_size):
            idx = perm[i : i + cfg.batch_size]
            ids, mask, n2t, slot, _ = _encode(tok, [data.sequences[k] for k in idx], device)
            y = torch.full(n2t.shape, -100, dtype=torch.long, device=device)
            for b, k in enumerate(idx):
                n = min(len(data.labels[k]), n2t.shape[1])
                y[b, :n] = torch.as_tensor(data.labels[k][:n].astype(np.int64), device=device)
            y[n2t < 0] = -100
            logits = model(ids, mask, n2t, slot)
            weight = torch.tensor([1.0, cfg.site_weight, cfg.site_weight], device=device) if cfg.site_weight != 1.0 else None
            loss = F.cross_entropy(logits.reshape(-1, len(CLASSES)).float(), y.reshape(-1), weight=weight, ignore_index=-100)
            if not torch.isfinite(loss):
                raise FloatingPointError("splice training loss is not finite")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if cfg.max_minutes and (time.time() - t0) / 60 > cfg.max_minutes:
                done = True
                break
        if done:
            break
    bar.close()
    return model.eval()
