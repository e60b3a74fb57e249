"""The training loop of every head put on a base model (fine-tuning, the splice model and, later,
segmentation): one step, the same guards everywhere.

``train_loop`` runs AdamW over ``params`` for ``epochs`` passes of ``batches(epoch)``, each step:
loss under autocast (``autocast_dtype``), a loss that is not finite stops training
(``FloatingPointError``: the CLI's exit code 3), gradient clipping, the update. It evaluates with
``evaluate(model) -> score`` (higher is better) every ``eval_every`` steps, or after every epoch
when ``eval_every`` is None, keeps the weights of the best evaluation (trainable parameters and
buffers such as BatchNorm statistics) and stops after ``patience`` evaluations without a better
score, at ``max_steps`` or when ``max_minutes`` have passed (evaluating then, so the budget's last
weights are judged too). The best weights are in the model when it returns.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from ntkit.runtime.progress import bar as progress_bar


@dataclass
class TrainResult:
    steps: int
    best_score: float | None  # None without evaluation
    stopped: str  # "epochs", "patience", "max_steps", "max_minutes"


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What training changes: the trainable parameters and the persistent buffers."""
    train = {n for n, p in model.named_parameters() if p.requires_grad}
    buffers = {n for n, _ in model.named_buffers()}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in train or k in buffers}


def train_loop(model: torch.nn.Module, params: list[torch.nn.Parameter], batches: Callable[[int], Iterable],
               step_loss: Callable[[torch.nn.Module, object], torch.Tensor], *, lr: float, epochs: int, weight_decay: float = 0.0,
               grad_clip: float = 1.0, max_steps: int | None = None, max_minutes: float | None = None, eval_every: int | None = None,
               patience: int = 3, evaluate: Callable[[torch.nn.Module], float] | None = None, autocast_dtype=None,
               device=None, progress: bool = False, desc: str = "train", total_steps: int | None = None) -> TrainResult:
    """See the module docstring. ``batches(epoch)`` yields what ``step_loss(model, batch)`` takes."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    use_autocast = autocast_dtype is not None and autocast_dtype != torch.float32
    t0, step, bad = time.time(), 0, 0
    best, best_state, stopped = -math.inf, None, "epochs"
    bar = progress_bar(total=total_steps, unit="step", desc=desc, enabled=progress)

    def check() -> bool:
        """Evaluate; True when patience has run out."""
        nonlocal best, best_state, bad
        score = evaluate(model)
        model.train()
        if score > best:
            best, best_state, bad = score, _snapshot(model), 0
        else:
            bad += 1
        bar.set_postfix(best=f"{best:.4f}")
        return bad >= patience

    model.train()
    try:
        for epoch in range(epochs):
            for batch in batches(epoch):
                with torch.autocast(device_type=device.type, dtype=autocast_dtype or torch.float32, enabled=use_autocast):
                    loss = step_loss(model, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"the training loss became {loss.item()} at step {step + 1} (epoch {epoch + 1})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, grad_clip)
                opt.step()
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}", **({"best": f"{best:.4f}"} if best > -math.inf else {}))
                out_of_time = max_minutes is not None and (time.time() - t0) / 60 > max_minutes
                at_max = max_steps is not None and step >= max_steps
                if evaluate is not None and eval_every and (step % eval_every == 0 or out_of_time or at_max):
                    if check():
                        stopped = "patience"
                        return TrainResult(step, best, stopped)
                if out_of_time or at_max:
                    stopped = "max_minutes" if out_of_time else "max_steps"
                    if evaluate is not None and not eval_every:
                        check()
                    return TrainResult(step, best if best > -math.inf else None, stopped)
            if evaluate is not None and not eval_every and check():
                stopped = "patience"
                return TrainResult(step, best, stopped)
        return TrainResult(step, best if best > -math.inf else None, stopped)
    finally:
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state, strict=False)
        model.eval()
