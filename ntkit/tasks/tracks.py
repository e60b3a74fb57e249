"""NTv3 trained on a user's functional tracks (bigWig) and elements (BED): new track heads on a
pre- or post-trained NTv3 trunk, the trunk frozen, adapted (IA3 / LoRA through peft) or fully
trained; the result runs in ``ntkit tracks predict`` and the annotation job like InstaDeep's heads.

The heads are NTv3's own kinds, on the centre crop of each window (``crop_fraction``, the paper's
0.375 unless the base model has its own): tracks = LayerNorm, linear, softplus (one value per base
and track); elements = LayerNorm, linear to two logits per element. Loss per window: Poisson
negative log-likelihood (``loss="poisson"``, counts-like coverage) or MSE on the tracks, plus
per-base cross-entropy on the elements, each averaged over the crop's bases and channels.
Targets are read from the bigWig files (missing values: 0) and BED files over the crop of each
training window. Validation (held-out contigs): the mean Pearson correlation of the tracks and the
mean PR-AUC of the elements, averaged; the best validation weights are kept (``ntkit.runtime.training``).

A trained model is saved apart from its base (``adapters.save_adapted``: the adapter, the heads,
``tracks_config.json`` with the recipe, the channel names and the base's fingerprint).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ntkit.io.annotation import Annotation, element_bed
from ntkit.io.genome import Genome, contig_aliases
from ntkit.models import adapters
from ntkit.models.ntv3.model import TrackHead
from ntkit.runtime import engine
from ntkit.runtime.training import train_loop
from ntkit.tasks.options import TrackTrainConfig  # noqa: F401  (re-exported)

CONFIG, WEIGHTS = "tracks_config.json", "tracks_heads.safetensors"


class _Heads(nn.Module):
    def __init__(self, dim: int, n_tracks: int, n_elements: int):
        super().__init__()

        self.tracks = TrackHead(dim, n_tracks) if n_tracks else None
        self.elements = TrackHead(dim, 2 * n_elements) if n_elements else None


class TrackModel(adapters.Adapted):
    """NTv3 trunk + track and element heads on the centre crop; ``forward(ids)`` -> (tracks
    [B, crop, T] or None, element logits [B, crop, E, 2] or None)."""

    def __init__(self, base, cfg: TrackTrainConfig, attach: bool = True):
        if getattr(base.config, "family", None) != "ntv3":
            raise ValueError("track heads train on an NTv3 model")
        if base.config.conditions_vocab_size and cfg.species is None:
            raise ValueError(f"a post-trained NTv3 is conditioned on a species: give one of {base.config.species}")
        heads = _Heads(base.config.hidden_size, len(cfg.tracks), len(cfg.elements))
        method = "head" if cfg.method == "frozen" else cfg.method
        super().__init__(base, method, heads, attach_adapter=attach)
        self.cfg = cfg
        f = cfg.crop_fraction or (base.config.keep_target_center_fraction if base.config.keep_target_center_fraction < 1 else 0.375)
        self.crop_fraction = f

    def crop(self, length: int) -> tuple[int, int]:
        n = int(length * self.crop_fraction)
        s = (length - n) // 2
        return s, s + n

    def forward(self, ids: torch.Tensor):
        species = self.cfg.species if self.base.config.conditions_vocab_size else None
        emb = self.base(ids, species=species, return_logits=False, heads=False).embedding
        s, e = self.crop(ids.shape[1])
        c = emb[:, s:e]
        tracks = F.softplus(self.head.tracks(c)) if self.head.tracks is not None else None
        elements = self.head.elements(c).unflatten(-1, (len(self.cfg.elements), 2)) if self.head.elements is not None else None
        return tracks, elements

    def save(self, directory: str | Path) -> Path:
        meta = {"tracks": asdict(self.cfg), "crop_fraction": self.crop_fraction}
        return adapters.save_adapted(directory, self.base, {"head": self.head}, meta, full=self.cfg.method == "full",
                                     weights=WEIGHTS, config=CONFIG)

    @classmethod
    def load(cls, base, directory: str | Path, force: bool = False) -> "TrackModel":
        d = Path(directory)
        try:
            cfg = TrackTrainConfig(**json.loads((d / CONFIG).read_text())["tracks"])
        except FileNotFoundError:
            raise FileNotFoundError(f"{d}: not a track model of `ntkit tracks train` ({CONFIG} not found)") from None
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{d / CONFIG}: {' '.join(str(e).split())} (an edited or foreign file)") from None
        base, parts, _ = adapters.load_adapted(d, base, full=cfg.method == "full", weights=WEIGHTS, config=CONFIG, force=force)
        m = cls(base, cfg, attach=False)
        adapters.load_part(m.head, parts.get("head"), d / WEIGHTS)
        return m.eval()


class TrackTargets:
    """Per-base targets: bigWig values (NaN and uncovered: 0) and BED element masks. Checked when
    opened: a bigWig without values is an error, and with ``genome`` so is one none of whose
    chromosomes is a contig of the FASTA (``chr20``/``20`` match): it would train on zeros. BED
    files as ``annotation.element_bed`` (not empty, inside the contigs)."""

    def __init__(self, bigwigs: dict[str, str | Path] | None = None, beds: dict[str, str | Path] | None = None,
                 genome: Genome | None = None):
        import pyBigWig

        self.tracks = list(bigwigs or {})
        self.elements = list(beds or {})
        self._bw = {}
        self.paths: dict[str, Path] = {}  # channel -> its file
        for name, path in (bigwigs or {}).items():
            try:
                bw = pyBigWig.open(str(path))
            except (RuntimeError, OSError):
                bw = None
            if bw is None or not bw.isBigWig():
                raise ValueError(f"{path}: not a bigWig file (track {name!r})")
            chroms = list(bw.chroms() or {})
            if not chroms or not bw.header().get("nBasesCovered"):
                raise ValueError(f"{path}: an empty bigWig, no values (track {name!r}): give the track's coverage")
            if genome is not None and not any(genome.has(c) for c in chroms):
                raise ValueError(f"{path}: its chromosomes ({', '.join(chroms[:8])}{'...' if len(chroms) > 8 else ''}) match no contig "
                                 f"of {genome.path.name} ({', '.join(genome.contigs[:8])}{'...' if len(genome.contigs) > 8 else ''}) "
                                 f"(track {name!r}): a bigWig of another assembly? rename its chromosomes or give the matching FASTA")
            self._bw[name] = bw
            self.paths[name] = Path(path)
        iv = {}
        for name, path in (beds or {}).items():
            iv[name] = element_bed(path, name, genome)
            self.paths[name] = Path(path)
        self.annotation = Annotation(iv) if iv else None

    def values(self, contig: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        t = np.zeros((end - start, len(self.tracks)), dtype=np.float32)
        for j, name in enumerate(self.tracks):
            bw = self._bw[name]
            chrom = next((a for a in contig_aliases(contig) if a in bw.chroms()), None)
            if chrom is None:
                continue
            n = bw.chroms()[chrom]
            a, b = min(start, n), min(end, n)
            if b > a:
                v = np.asarray(bw.values(chrom, a, b, numpy=True), dtype=np.float32)
                if len(v) == b - a:  # a chromosome without any value reads as an empty array: zeros
                    t[a - start:b - start, j] = np.nan_to_num(v, nan=0.0)
        if self.annotation is None:
            return t, np.zeros((end - start, 0), dtype=np.uint8)
        order = [self.annotation.types.index(e) for e in self.elements]
        return t, self.annotation.mask(contig, start, end)[order].T.astype(np.uint8)


@dataclass
class TrackWindows:
    regions: list[tuple[str, int, int]]
    sequences: list[str]

    def __len__(self) -> int:
        return len(self.sequences)


def track_windows(genome: Genome, contigs: Sequence[str], window_bp: int, *, max_windows: int | None = 1000,
                  max_n_fraction: float = 0.1, seed: int = 0) -> TrackWindows:
    """Windows on a grid of ``window_bp`` over ``contigs`` (N-rich ones dropped), a seeded sample of at
    most ``max_windows`` kept in genome order."""
    cand = []
    for c in contigs:
        name = genome.resolve(c)
        cand += [(name, s) for s in range(0, genome.lengths[name] - window_bp + 1, window_bp)]
    order = np.random.default_rng(seed).permutation(len(cand))
    keep = []
    for i in order:
        name, s = cand[i]
        seq = genome.fetch(name, s, s + window_bp)
        if seq.count("N") <= max_n_fraction * window_bp:
            keep.append((i, name, s, seq))
        if max_windows is not None and len(keep) >= max_windows:
            break
    keep.sort()
    return TrackWindows([(c, s, s + window_bp) for _, c, s, _ in keep], [q for *_, q in keep])


def check_targets(targets: TrackTargets, windows: TrackWindows, crop, what: str = "training") -> None:
    """Every channel must have signal in the ``crop`` (``TrackModel.crop``) of some window: a track
    that is 0 everywhere (another assembly's coordinates, a track of other contigs) or an element
    without a positive base would train a head to predict nothing, and the run would still "work"."""
    seen = np.zeros(len(targets.tracks) + len(targets.elements), dtype=bool)
    for c, s, e in windows.regions:
        a, b = crop(e - s)
        t, el = targets.values(c, s + a, s + b)
        seen |= np.concatenate([(t != 0).any(0), el.any(0)])
        if seen.all():
            return
    contigs = sorted({c for c, _, _ in windows.regions})
    for name, ok in zip(targets.tracks + targets.elements, seen):
        if not ok:
            kind = "all zero" if name in targets.tracks else "without a positive base"
            raise ValueError(f"{targets.paths[name]}: {name!r} is {kind} over the {len(windows)} {what} windows on "
                             f"{', '.join(contigs)}: choose contigs that the file covers (or check its chromosome names)")


def track_loss(pred, y, logits, e, cfg: TrackTrainConfig) -> torch.Tensor:
    loss = 0.0
    if pred is not None:
        pred, y = pred.float(), y.float()
        loss = loss + (F.poisson_nll_loss(pred, y, log_input=False) if cfg.loss == "poisson" else F.mse_loss(pred, y))
    if logits is not None:
        loss = loss + F.cross_entropy(logits.float().reshape(-1, 2), e.reshape(-1).long())
    return loss


def predict_windows(model: TrackModel, sequences: Iterable[str], runtime=None) -> Iterator[np.ndarray]:
    """Per window: [crop, tracks + elements] (track values, element probabilities), float32."""

    def forward(m, batch: list[str]):
        ids, _ = m.base.tokenizer.batch_encode(batch).to_torch(engine.model_device(m))
        tracks, elements = m(ids)
        parts = ([tracks.float()] if tracks is not None else []) + ([elements.float().softmax(-1)[..., 1]] if elements is not None else [])
        y = torch.cat(parts, -1).cpu().numpy()
        return [y[r, : m.crop(len(s))[1] - m.crop(len(s))[0]] for r, s in enumerate(batch)]

    seqs = list(sequences)
    m = model.cfg.window_bp
    for s in seqs:
        if len(s) != m:
            raise ValueError(f"track models read windows of {m} bases (their training length), got {len(s)}")
    yield from engine.run(model, seqs, forward, length=len, runtime=runtime, desc="tracks", unit="window")


def evaluate_tracks(model: TrackModel, data: TrackWindows, targets: TrackTargets, runtime=None) -> dict[str, float]:
    """Mean Pearson r over tracks and mean PR-AUC over elements on every crop base of ``data``."""
    from sklearn.metrics import average_precision_score

    preds, ys, es = [], [], []
    for (c, s, e), p in zip(data.regions, predict_windows(model, data.sequences, runtime=runtime)):
        a, b = model.crop(e - s)
        t, el = targets.values(c, s + a, s + b)
        preds.append(p)
        ys.append(t)
        es.append(el)
    P, Y, E = np.concatenate(preds), np.concatenate(ys), np.concatenate(es)
    nt = len(model.cfg.tracks)
    out = {}
    for j, name in enumerate(model.cfg.tracks):
        out[f"pearson_{name}"] = float(np.corrcoef(P[:, j], Y[:, j])[0, 1]) if Y[:, j].std() > 0 and P[:, j].std() > 0 else math.nan
    for j, name in enumerate(model.cfg.elements):
        out[f"prauc_{name}"] = float(average_precision_score(E[:, j], P[:, nt + j])) if E[:, j].any() else math.nan
    vals = [v for v in out.values() if not math.isnan(v)]
    out["score"] = float(np.mean(vals)) if vals else math.nan
    return out


def train_tracks(base, genome: Genome, targets: TrackTargets, train: TrackWindows, cfg: TrackTrainConfig, *,
                 valid: TrackWindows | None = None, runtime=None) -> TrackModel:
    """A ``TrackModel`` trained with the shared loop (module docstring). Seeded by ``cfg.seed``."""
    import copy

    rt = engine.as_runtime(runtime)
    device = torch.device(rt.device) if rt.device is not None else next(base.parameters()).device
    if cfg.method == "full":
        base = copy.deepcopy(base)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        model = TrackModel(base, cfg).to(device).train()
        check_targets(targets, train, model.crop)
        rng = np.random.default_rng(cfg.seed)

        def batches(epoch: int):
            perm = rng.permutation(len(train))
            for i in range(0, len(train), cfg.batch_size):
                idx = perm[i:i + cfg.batch_size]
                ids, _ = base.tokenizer.batch_encode([train.sequences[k] for k in idx]).to_torch(device)
                ys, es = [], []
                for k in idx:
                    c, s, e = train.regions[k]
                    a, b = model.crop(e - s)
                    t, el = targets.values(c, s + a, s + b)
                    ys.append(t)
                    es.append(el)
                yield ids, torch.as_tensor(np.stack(ys), device=device), torch.as_tensor(np.stack(es), device=device)

        def step_loss(m, batch):
            ids, y, e = batch
            pred, logits = m(ids)
            return track_loss(pred, y, logits, e, cfg)

        def evaluate(m) -> float:
            s = evaluate_tracks(m, valid, targets, runtime=engine.Runtime(device=device))["score"]
            return s if not math.isnan(s) else -math.inf

        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        res = train_loop(model, [p for p in model.parameters() if p.requires_grad], batches, step_loss, lr=cfg.lr, epochs=cfg.epochs,
                         max_steps=cfg.max_steps, max_minutes=cfg.max_minutes, eval_every=cfg.eval_every, patience=cfg.patience,
                         evaluate=evaluate if valid is not None and len(valid) else None, autocast_dtype=torch.bfloat16 if bf16 else None,
                         device=device, progress=rt.progress, desc=f"tracks ({cfg.method})",
                         total_steps=cfg.epochs * math.ceil(len(train) / cfg.batch_size))
    model.train_result = {"steps": res.steps, "best_valid_score": res.best_score, "stopped": res.stopped}
    return model.eval()
