"""Fine-tuning: IA3 (as in NT), LoRA and full, with classification / regression heads.

IA3 and LoRA are peft adapters (``ntkit.adapters``) injected into the base model; only their
parameters and the head train, and ``full`` trains every weight. The head mean-pools the last
layer over the sequence tokens (``<cls>`` and padding excluded) and applies dropout + a linear
layer: ``n_classes`` logits (cross-entropy) or one value (MSE). A fine-tuned model is saved
apart from its base: the peft adapter in peft's format, the head (``head.safetensors``) and
``finetune_config.json`` (the recipe, the training data's class names, the base's configuration).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import adapters, engine
from .model import NTModel

Method = Literal["ia3", "lora", "full", "head"]
# Learning rate per method when none is given: NT's 3e-3 for IA3; LoRA and a head alone train a
# little more gently; every weight at a pretraining-like rate.
LEARNING_RATES = {"ia3": 3e-3, "lora": 1e-3, "full": 5e-5, "head": 1e-3}


@dataclass
class FinetuneConfig:
    method: Method = "ia3"
    task: Literal["classification", "regression"] = "classification"
    n_classes: int = 2
    lora_rank: int = 8
    lora_alpha: float = 16.0
    head_dropout: float = 0.1
    lr: float | None = None  # default: LEARNING_RATES[method]
    weight_decay: float = 0.0
    epochs: int = 10
    batch_size: int = 8
    patience: int = 3  # epochs without validation improvement before stopping
    valid_fraction: float = 0.1  # held out of the training data for early stopping
    max_steps: int | None = None
    seed: int = 0
    classes: list[int | str] | None = None  # class k's label (from the training data); saved with the adapter

    def __post_init__(self) -> None:
        from .config import check_fields

        if isinstance(self.classes, tuple):
            self.classes = list(self.classes)
        check_fields(self)
        if self.lr is None:
            self.lr = LEARNING_RATES[self.method]
        if self.classes is not None and len(self.classes) != self.n_classes:
            raise ValueError(f"{len(self.classes)} class names for n_classes={self.n_classes}")
        if self.task == "classification" and self.n_classes < 2:
            raise ValueError(f"classification needs at least 2 classes, not {self.n_classes}")
        if not self.lr > 0 or self.batch_size < 1 or self.epochs < 1:
            raise ValueError(f"FinetuneConfig: lr > 0, batch_size >= 1 and epochs >= 1 needed (got {self.lr}, {self.batch_size}, {self.epochs})")


class SequenceHead(nn.Module):
    def __init__(self, hidden: int, n_out: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, n_out)

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        keep = keep.unsqueeze(-1).to(h.dtype)
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1)
        return self.linear(self.dropout(pooled))


class FinetunedModel(nn.Module):
    """Base model + optional adapter + head; ``predict(sequences)`` returns class probabilities
    [N, n_classes] or values [N]."""

    def __init__(self, base: NTModel, cfg: FinetuneConfig, attach: bool = True):
        super().__init__()
        self.base = base
        self.cfg = cfg
        self.head = SequenceHead(base.config.hidden_size, cfg.n_classes if cfg.task == "classification" else 1, cfg.head_dropout)
        for p in base.parameters():
            p.requires_grad_(cfg.method == "full")
        if attach and cfg.method in ("ia3", "lora"):  # peft layers injected into the base, in place (adapters.detach undoes it)
            adapters.attach(base, cfg.method, cfg.lora_rank, cfg.lora_alpha)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        L = self.base.config.num_layers
        h = self.base(ids, mask, repr_layers=[L], return_logits=False).hidden_states[L]
        out = self.head(h, mask & (ids != self.base.config.cls_token_id))
        return out.squeeze(-1) if self.cfg.task == "regression" else out

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def iter_predict(self, sequences: Iterable[str], *, batch_tokens: int | None = None, batch_size: int | None = None,
                     device=None, dtype=None, progress: bool = False) -> Iterator[np.ndarray]:
        """Per sequence, in input order, as they stream in: class probabilities [n_classes] or a value
        (through ``ntkit.engine``; sequences longer than the context are truncated)."""
        tok, cap = self.base.tokenizer, self.base.config.max_tokens

        def forward(model, batch: list[str]):
            _, ids, mask = engine.encode(tok, batch, engine.model_device(model), truncation=True)
            y = model(ids, mask).float()
            y = torch.softmax(y, -1) if self.cfg.task == "classification" else y
            return list(y.cpu().numpy())

        yield from engine.run(self, sequences, forward, length=lambda s: min(tok.token_length(len(s)), cap),
                              batch_tokens=batch_tokens, batch_size=batch_size, device=device, dtype=dtype,
                              progress=progress, desc="predict")

    def predict(self, sequences: Sequence[str], *, batch_tokens: int | None = None, batch_size: int | None = None,
                device=None, dtype=None, progress: bool = False) -> np.ndarray:
        """``iter_predict`` collected: [N, n_classes] probabilities or [N] values."""
        out = list(self.iter_predict(sequences, batch_tokens=batch_tokens, batch_size=batch_size, device=device,
                                     dtype=dtype, progress=progress))
        if not out:
            return np.zeros((0, self.cfg.n_classes) if self.cfg.task == "classification" else (0,), dtype=np.float32)
        return np.stack(out)

    # -- adapters on disk --------------------------------------------------------------------------------

    def save_adapter(self, directory: str | Path) -> Path:
        """The peft adapter (IA3/LoRA), the head and the classes, or every weight for full
        fine-tuning, apart from the base (see ``save_adapted``)."""
        meta = {"finetune": asdict(self.cfg), "trainable_parameters": self.trainable_parameters()}
        return adapters.save_adapted(directory, self.base, {"head": self.head}, meta, full=self.cfg.method == "full",
                                     weights=HEAD_WEIGHTS, config=FINETUNE_CONFIG)

    @classmethod
    def load_adapter(cls, base: NTModel | None, directory: str | Path, force: bool = False) -> "FinetunedModel":
        """A folder of ``save_adapter`` on its base (``adapters.load_adapted`` checks the base;
        ``force`` accepts a base with other weights)."""
        d = Path(directory)
        if not (d / FINETUNE_CONFIG).exists():
            raise FileNotFoundError(f"{d}: not an ntkit adapter folder ({FINETUNE_CONFIG} not found)")
        try:
            cfg = FinetuneConfig(**json.loads((d / FINETUNE_CONFIG).read_text())["finetune"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{d / FINETUNE_CONFIG}: {' '.join(str(e).split())} (an edited or foreign file)") from None
        base, parts, _ = adapters.load_adapted(d, base, full=cfg.method == "full", weights=HEAD_WEIGHTS, config=FINETUNE_CONFIG,
                                               force=force)
        m = cls(base, cfg, attach=False)
        adapters.load_part(m.head, parts.get("head"), d / HEAD_WEIGHTS)
        return m

    def merged(self) -> NTModel:
        """The base with the adapter folded into its weights (peft's ``merge_and_unload``): a plain
        ``NTModel``; the head is not part of it."""
        return adapters.merge(self.base)


FINETUNE_CONFIG, HEAD_WEIGHTS = "finetune_config.json", "head.safetensors"


def predict_to_file(model: FinetunedModel, input: str | Path, out: str | Path, *, sequence_column: str | None = None,
                    id_column: str | None = None, chunk_size: int = 4096, shard=None, restart: bool = False,
                    batch_tokens: int | None = None, device=None, dtype=None, progress: bool = True) -> dict:
    """Predictions of a fine-tuned model for every record of ``input`` (FASTA or table) into ``out``
    (parquet / TSV / CSV): ``id``, the input's other columns, then ``prob_<class>`` per class
    (the training data's class names) and ``predicted`` (classification) or ``prediction``
    (regression). A sharded, resumable job
    (``ntkit.jobs``), as ``embed_to_file``."""
    import pyarrow as pa

    from . import jobs
    from .embed import id_col, iter_sequences, table_schema

    extra = table_schema(input)
    seq_col = sequence_column or next((c for c in ("sequence", "seq", "Sequence") if c in extra.names), None)
    fields = [pa.field("id", pa.string())] + [f for f in extra if f.name not in (seq_col, "id", id_col(extra, id_column))]
    classification = model.cfg.task == "classification"
    if classification:
        names = model.cfg.classes or list(range(model.cfg.n_classes))
        fields += [pa.field(f"prob_{n}", pa.float32()) for n in names]
        fields += [pa.field("predicted", pa.string() if any(isinstance(n, str) for n in names) else pa.int64())]
    else:
        fields += [pa.field("prediction", pa.float32())]
    schema = pa.schema(fields)

    def process(chunk):
        preds = model.iter_predict([r[1] for r in chunk], batch_tokens=batch_tokens, device=device, dtype=dtype)
        for (sid, _, ex), y in zip(chunk, preds):
            row = {"id": sid, **{k: v for k, v in ex.items() if k != "id"}}
            if classification:
                row.update({f"prob_{n}": float(v) for n, v in zip(names, y)}, predicted=names[int(np.argmax(y))])
            else:
                row["prediction"] = float(y)
            yield row

    job = jobs.Job("predict", [out], iter_sequences(input, sequence_column, id_column), process, schema, merge_outputs,
                   input_files={"sequences": input}, options={"sequence_column": sequence_column, "id_column": id_column,
                                                              "schema": schema.to_string()},
                   model=model, chunk_size=chunk_size, weight=lambda r: len(r[1]), max_weight=64_000_000, unit="seq", desc="predict")
    return jobs.run_job(job, shard=shard, restart=restart, progress=progress)


def merge_outputs(store) -> dict:
    import pyarrow.parquet as pq

    from .jobs import write_table_file

    out = store.outputs[0]
    parts = store.parts()
    write_table_file(store.batches(), pq.ParquetFile(parts[0]).schema_arrow, out)
    n = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
    return {"outputs": [str(out)], "sequences": n, "summary": f"{n} sequences predicted"}


def count_ia3_parameters(model_cfg) -> int:
    """IA3 vectors of a config (keys + values + FFN activation, every layer)."""
    return model_cfg.num_layers * (2 * model_cfg.hidden_size + model_cfg.ffn_size)


# -- training -------------------------------------------------------------------------------------------------


def _metric(task: str, y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import matthews_corrcoef

    if task == "classification":
        return float(matthews_corrcoef(y, pred.argmax(1)))
    return -float(np.mean((pred - y) ** 2))  # higher is better


def finetune(
    base: NTModel,
    sequences: Sequence[str],
    labels: Sequence,
    cfg: FinetuneConfig | None = None,
    *,
    valid: tuple[Sequence[str], Sequence] | None = None,
    device=None,
    dtype=None,
    progress: bool = False,
) -> FinetunedModel:
    """Train a head (+ adapter, or every weight) on ``sequences``/``labels``; early stopping on
    ``valid`` (or a stratified ``cfg.valid_fraction`` split of the training data); the best
    epoch's weights are returned. ``base`` is copied for full fine-tuning, shared otherwise.

    Classification labels are class indices when ``cfg.classes`` names the classes; without it
    they are the labels themselves (``0``/``1``, ``"enhancer"`` ...): the classes are defined by
    them (``ntkit.labels``) and stored with the adapter, and ``valid`` labels are numbered alike."""
    cfg = cfg or FinetuneConfig()
    if cfg.task == "classification" and cfg.classes is None:
        from dataclasses import replace

        from .labels import Classes

        classes = Classes.fit(labels, "labels")
        labels = classes.encode(labels, "labels")
        if valid is not None:
            valid = (valid[0], classes.encode(valid[1], "valid labels"))
        cfg = replace(cfg, n_classes=len(classes), classes=list(classes.names))
    device = device or next(base.parameters()).device
    if cfg.method == "full":
        base = copy.deepcopy(base)
    model = FinetunedModel(base, cfg).to(device)
    y_all = np.asarray(labels, dtype=np.int64 if cfg.task == "classification" else np.float32)
    seqs = list(sequences)
    rng = np.random.default_rng(cfg.seed)
    if valid is None and cfg.valid_fraction > 0 and len(seqs) >= 10:
        from sklearn.model_selection import train_test_split

        idx = np.arange(len(seqs))
        strat = y_all if cfg.task == "classification" and np.bincount(y_all).min(initial=0) >= 2 else None
        tr, va = train_test_split(idx, test_size=cfg.valid_fraction, random_state=cfg.seed, stratify=strat)
        valid = ([seqs[i] for i in va], y_all[va])
        seqs, y_all = [seqs[i] for i in tr], y_all[tr]
    tok = base.tokenizer
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    torch.manual_seed(cfg.seed)
    best, best_state, bad, step = -math.inf, None, 0, 0
    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.epochs, unit="epoch", desc=f"finetune ({cfg.method})", dynamic_ncols=True, disable=not progress)
    for epoch in range(cfg.epochs):
        model.train()
        perm = rng.permutation(len(seqs))
        for i0 in range(0, len(seqs), cfg.batch_size):
            idx = perm[i0 : i0 + cfg.batch_size]
            ids, mask = tok.batch_encode([seqs[k] for k in idx], truncation=True).to_torch(device)
            y = torch.as_tensor(y_all[idx], device=device)
            with torch.autocast(device_type=torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype not in (None, torch.float32)):
                out = model(ids, mask)
            loss = F.cross_entropy(out.float(), y) if cfg.task == "classification" else F.mse_loss(out.float(), y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"fine-tuning loss became {loss.item()} at epoch {epoch + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            if cfg.max_steps and step >= cfg.max_steps:
                break
        bar.update(1)
        if valid is None:
            continue
        score = _metric(cfg.task, np.asarray(valid[1]), model.predict(valid[0], batch_size=cfg.batch_size * 2, device=device))
        if score > best:
            best, bad = score, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items() if _trainable(model, k)}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
        if cfg.max_steps and step >= cfg.max_steps:
            break
    bar.close()
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    model.eval()
    return model


def _trainable(model: nn.Module, key: str) -> bool:
    params = dict(model.named_parameters())
    return key in params and params[key].requires_grad
