"""Fine-tuning: IA3 (as in NT), LoRA and full, with classification / regression heads.

IA3 and LoRA are peft adapters (``ntkit.models.adapters``) injected into the base model; only their
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
from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ntkit.core.sequence import reverse_complement
from ntkit.io.labels import Classes
from ntkit.io.sequences import id_col, iter_sequences, table_schema
from ntkit.models import adapters
from ntkit.models.nt.model import NTModel
from ntkit.runtime import engine, jobs
from ntkit.runtime.jobs import write_table_file
from ntkit.runtime.training import train_loop
from ntkit.tasks.options import LEARNING_RATES, FinetuneConfig, Method  # noqa: F401  (re-exported)


class SequenceHead(nn.Module):
    def __init__(self, hidden: int, n_out: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(hidden, n_out)

    def forward(self, h: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        keep = keep.unsqueeze(-1).to(h.dtype)
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1)
        return self.linear(self.dropout(pooled))


class FinetunedModel(adapters.Adapted):
    """Base model + optional adapter + head (``adapters.Adapted``); ``predict(sequences)`` returns
    class probabilities [N, n_classes] or values [N]."""

    def __init__(self, base: NTModel, cfg: FinetuneConfig, attach: bool = True):
        head = SequenceHead(base.config.hidden_size, cfg.n_classes if cfg.task == "classification" else 1, cfg.head_dropout)
        super().__init__(base, cfg.method, head, attach_adapter=attach, rank=cfg.lora_rank, alpha=cfg.lora_alpha)
        self.cfg = cfg

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.base(ids, mask, repr_layers=[-1], return_logits=False).hidden_states[-1]
        out = self.head(h, mask & (ids != self.base.config.cls_token_id))
        if self.cfg.task == "classification":
            return out
        out = out.squeeze(-1)
        if self.cfg.target_mean is not None:
            out = out * self.cfg.target_scale + self.cfg.target_mean
        return out

    def iter_predict(self, sequences: Iterable[str], *, runtime: engine.Runtime | None = None) -> Iterator[np.ndarray]:
        """Per sequence, in input order, as they stream in: class probabilities [n_classes] or a value
        (through ``ntkit.runtime.engine``; sequences longer than the context are truncated); with
        ``cfg.reverse_complement`` the mean of the sequence's and its reverse complement's."""
        tok, cap = self.base.tokenizer, self.base.config.max_tokens

        def outputs(model, batch: list[str]) -> torch.Tensor:
            _, ids, mask = engine.encode(tok, batch, engine.model_device(model), truncation=True)
            y = model(ids, mask).float()
            return torch.softmax(y, -1) if self.cfg.task == "classification" else y

        def forward(model, batch: list[str]):
            y = outputs(model, batch)
            if self.cfg.reverse_complement:  # the mean over both strands (probabilities, not logits)
                y = (y + outputs(model, [reverse_complement(s) for s in batch])) / 2
            return list(y.cpu().numpy())

        yield from engine.run(self, sequences, forward, length=lambda s: min(tok.token_length(len(s)), cap), runtime=runtime,
                              desc="predict")

    def predict(self, sequences: Sequence[str], *, runtime: engine.Runtime | None = None) -> np.ndarray:
        """``iter_predict`` collected: [N, n_classes] probabilities or [N] values."""
        out = list(self.iter_predict(sequences, runtime=runtime))
        if not out:
            return np.zeros((0, self.cfg.n_classes) if self.cfg.task == "classification" else (0,), dtype=np.float32)
        return np.stack(out)

    # -- adapters on disk --------------------------------------------------------------------------------

    def save_adapter(self, directory: str | Path) -> Path:
        """The peft adapter (IA3/LoRA), the head and the classes, or every weight for full
        fine-tuning, apart from the base (see ``save_adapted``)."""
        meta = {"finetune": asdict(self.cfg), "trainable_parameters": self.trainable_parameters()}
        return adapters.save_adapted(directory, self.base, {"head": self.head}, meta, full=self.cfg.method == "full",
                                     weights=HEAD_WEIGHTS, config=FINETUNE_CONFIG, peft_head="head")

    @classmethod
    def load_adapter(cls, base: NTModel | None, directory: str | Path, force: bool = False, species: str | None = None) -> "FinetunedModel":
        """A folder of ``save_adapter`` on its base (``adapters.load_adapted`` checks the base;
        ``force`` accepts a base with other weights). The base runs as it was trained: its
        ``backbone(species)`` with the species saved in the folder (``species``, when given, must
        be that one)."""
        d = Path(directory)
        if not (d / FINETUNE_CONFIG).exists() and (d / adapters.CONFIG).exists():
            return cls.from_peft(base, d)
        if not (d / FINETUNE_CONFIG).exists():
            raise FileNotFoundError(f"{d}: not an ntkit adapter folder ({FINETUNE_CONFIG} not found)")
        try:
            cfg = FinetuneConfig(**json.loads((d / FINETUNE_CONFIG).read_text())["finetune"])
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{d / FINETUNE_CONFIG}: {' '.join(str(e).split())} (an edited or foreign file)") from None
        if species is not None and species != cfg.species:
            raise ValueError(f"{d} was trained with --species {cfg.species}, not {species}: its head reads that species' embeddings")
        if base is not None:
            base = base.backbone(cfg.species)
        base, parts, _ = adapters.load_adapted(d, base, full=cfg.method == "full", weights=HEAD_WEIGHTS, config=FINETUNE_CONFIG,
                                               force=force)
        base = base.backbone(cfg.species)  # a full fine-tuning's saved base: the same view
        m = cls(base, cfg, attach=False)
        adapters.load_part(m.head, parts.get("head"), d / HEAD_WEIGHTS)
        return m

    @classmethod
    def from_peft(cls, base: NTModel | None, directory: str | Path) -> "FinetunedModel":
        """A peft adapter saved by transformers users (``PeftModel.save_pretrained``) on
        ``ntkit.hf.NTForSequenceClassification`` (IA3 or LoRA, the head in ``modules_to_save`` as
        ``classifier``): the classes are numbered 0..n-1, one output is a regression value (in the
        units it was trained in). Such a folder records no fingerprint of its base: ``base`` is
        trusted to be the one it was trained on."""
        import warnings

        from safetensors.torch import load_file

        d = Path(directory)
        if base is None:
            raise ValueError(f"{d} holds a peft adapter: give the base model it was trained on (--model)")
        try:
            pc = json.loads((d / adapters.CONFIG).read_text())
            method = {"IA3": "ia3", "LORA": "lora"}[pc["peft_type"]]
        except (OSError, ValueError, KeyError) as e:
            raise ValueError(f"{d / adapters.CONFIG}: not an IA3 or LoRA adapter of peft ({type(e).__name__}: {e})") from None
        head = {k.removeprefix(adapters.PEFT_HEAD).replace("modules_to_save.", "").removeprefix("default."): v
                for k, v in load_file(str(d / adapters.WEIGHTS)).items() if k.startswith(adapters.PEFT_HEAD)}
        if "linear.weight" not in head:
            raise ValueError(f"{d / adapters.WEIGHTS}: no sequence head (classifier.linear of ntkit.hf.NTForSequenceClassification "
                             "saved as modules_to_save): nothing to predict with")
        n = int(head["linear.weight"].shape[0])
        cfg = FinetuneConfig(method=method, task="classification" if n > 1 else "regression", n_classes=max(n, 2),
                             lora_rank=int(pc.get("r") or 8), lora_alpha=float(pc.get("lora_alpha") or 16.0))
        trained_on = pc.get("base_model_name_or_path")
        given = getattr(base, "name_or_path", None)
        if trained_on and given and str(trained_on) != str(given):
            warnings.warn(f"{d}: trained on {trained_on}, applied to {given} (a peft adapter records no base fingerprint)", stacklevel=2)
        adapters.load(base, d)
        m = cls(base, cfg, attach=False)
        adapters.load_part(m.head, head, d / adapters.WEIGHTS)
        return m


FINETUNE_CONFIG, HEAD_WEIGHTS = "finetune_config.json", "head.safetensors"


def holds_base(directory: str | Path) -> bool:
    """Whether an adapter folder brings its own base model (full fine-tuning: no --model needed)."""
    cfg = Path(directory) / FINETUNE_CONFIG
    return cfg.exists() and json.loads(cfg.read_text()).get("finetune", {}).get("method") == "full"


def predict_to_file(model: FinetunedModel, input: str | Path, out: str | Path, *, sequence_column: str | None = None,
                    id_column: str | None = None, chunk_size: int = 4096, shard=None, restart: bool = False,
                    runtime: engine.Runtime | None = None) -> dict:
    """Predictions of a fine-tuned model for every record of ``input`` (FASTA or table) into ``out``
    (parquet / TSV / CSV): ``id``, the input's other columns, then ``prob_<class>`` per class
    (the training data's class names) and ``predicted`` (classification) or ``prediction``
    (regression). A sharded, resumable job
    (``ntkit.runtime.jobs``), as ``embed_to_file``."""
    import pyarrow as pa

    rt = engine.as_runtime(runtime)
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
        preds = model.iter_predict([r[1] for r in chunk], runtime=rt.replace(progress=False))
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
                   model=model, chunk_size=chunk_size, weight=lambda r: len(r[1]), max_weight=64_000_000, unit="seq", desc="predict",
                   rows_per_item=1)
    return jobs.run_job(job, shard=shard, restart=restart, progress=rt.progress)


def merge_outputs(store) -> dict:
    import pyarrow.parquet as pq

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
    runtime: engine.Runtime | None = None,
) -> FinetunedModel:
    """Train a head (+ adapter, or every weight) on ``sequences``/``labels`` with the shared loop
    (``ntkit.runtime.training``): early stopping on ``valid`` (or a stratified ``cfg.valid_fraction``
    split of the training data) by MCC (regression: MSE), the best epoch's weights kept. ``base``
    is copied for full fine-tuning, shared otherwise. Seeded by ``cfg.seed`` (the head's
    initialisation, the split, the order of batches, dropout), the caller's RNG state untouched.

    Classification labels are class indices when ``cfg.classes`` names the classes; without it
    they are the labels themselves (``0``/``1``, ``"enhancer"`` ...): the classes are defined by
    them (``ntkit.io.labels``) and stored with the adapter, and ``valid`` labels are numbered alike."""
    rt = engine.as_runtime(runtime)
    cfg = cfg or FinetuneConfig()
    base = base.backbone(cfg.species)  # SegmentNT: its NT v2 backbone; a post-trained NTv3: conditioned on cfg.species
    if cfg.task == "classification" and cfg.classes is None:
        classes = Classes.fit(labels, "labels")
        labels = classes.encode(labels, "labels")
        if valid is not None:
            valid = (valid[0], classes.encode(valid[1], "valid labels"))
        cfg = replace(cfg, n_classes=len(classes), classes=list(classes.names))
    device = torch.device(rt.device) if rt.device is not None else next(base.parameters()).device
    if cfg.method == "full":
        base = copy.deepcopy(base)
    y_all = np.asarray(labels, dtype=np.int64 if cfg.task == "classification" else np.float32)
    seqs = list(sequences)
    if cfg.sequence_bp is None and seqs:
        cfg = replace(cfg, sequence_bp=int(np.median([len(s) for s in seqs])))
    if cfg.task == "regression" and cfg.target_mean is None and len(y_all):
        if not np.isfinite(y_all).all():
            raise ValueError("regression targets must be finite numbers (NaN or inf among the labels)")
        sd = float(y_all.std())
        cfg = replace(cfg, target_mean=float(y_all.mean()), target_scale=sd if sd > 0 else 1.0)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        model = FinetunedModel(base, cfg).to(device)
        rng = np.random.default_rng(cfg.seed)
        if valid is None and cfg.valid_fraction > 0 and len(seqs) >= 10:
            from sklearn.model_selection import train_test_split

            idx = np.arange(len(seqs))
            strat = y_all if cfg.task == "classification" and np.bincount(y_all).min(initial=0) >= 2 else None
            tr, va = train_test_split(idx, test_size=cfg.valid_fraction, random_state=cfg.seed, stratify=strat)
            valid = ([seqs[i] for i in va], y_all[va])
            seqs, y_all = [seqs[i] for i in tr], y_all[tr]
        tok = base.tokenizer

        def batches(epoch: int):
            perm = rng.permutation(len(seqs))
            for i0 in range(0, len(seqs), cfg.batch_size):
                idx = perm[i0 : i0 + cfg.batch_size]
                batch = [seqs[k] for k in idx]
                if cfg.reverse_complement:  # each sequence on a random strand
                    flip = rng.random(len(batch)) < 0.5
                    batch = [reverse_complement(x) if f else x for x, f in zip(batch, flip)]
                ids, mask = tok.batch_encode(batch, truncation=True).to_torch(device)
                yield ids, mask, torch.as_tensor(y_all[idx], device=device)

        def step_loss(m, batch) -> torch.Tensor:
            ids, mask, y = batch
            out = m(ids, mask).float()
            if cfg.task == "classification":
                return F.cross_entropy(out, y)
            return F.mse_loss(out, y) / (cfg.target_scale or 1.0) ** 2  # the MSE of z-scores

        check = engine.Runtime(device=device, batch_size=cfg.batch_size * 2)
        evaluate = (lambda m: _metric(cfg.task, np.asarray(valid[1]), m.predict(valid[0], runtime=check))) if valid is not None else None
        train_loop(model, [p for p in model.parameters() if p.requires_grad], batches, step_loss, lr=cfg.lr, epochs=cfg.epochs,
                   weight_decay=cfg.weight_decay, max_steps=cfg.max_steps, patience=cfg.patience, evaluate=evaluate,
                   autocast_dtype=rt.dtype, device=device, progress=rt.progress, desc=f"finetune ({cfg.method})",
                   total_steps=cfg.epochs * math.ceil(len(seqs) / cfg.batch_size))
    return model.eval()
