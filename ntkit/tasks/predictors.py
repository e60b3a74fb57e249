"""Predictors: what a model says about a DNA sequence, behind one interface, so that every
perturbation (``ntkit.tasks.perturb``: VCF variant effects, saturation mutagenesis) runs over any of them.

A predictor maps sequences to outputs, through ``ntkit.runtime.engine``:

- ``kind = "sequence"``: one vector per sequence (``outputs`` names its entries), e.g. a fine-tuned
  classifier's class probabilities or a regressor's value (``SequenceModel``);
- ``kind = "base"``: one vector per base, ``[len, C]`` (e.g. acceptor and donor probabilities of a
  splice model, ``SpliceSites``); ``stranded`` predictors read a sequence 5' -> 3' of its gene, so
  a perturbation predicts on the reverse complement for minus-strand genes. ``probability`` says
  which outputs are probabilities (perturbations report their largest gain and loss) and which are
  track values (perturbations report the change of their sum, as Borzoi and AlphaGenome do).
  ``windowed`` per-base predictors (SegmentNT's elements, NTv3's tracks) predict whole windows of
  ``window()`` bases: the bases ``output_span(length)`` of an input (NTv3: the centre crop), the
  centre ``valid(window)`` trusted (SegmentNT: without its flanks).

Each declares what it can read: ``max_length`` (bases of one input), and for per-base predictors
``receptive_field`` (bases each side of a base that its output depends on) with ``exact`` true when
nothing further away matters (a pure convolution: a window of ``2 * receptive_field + 1`` bases
gives the same output as any longer one); a transformer's output depends on its whole window, so
it is not exact and a perturbation compares reference and alternative in the same window.

NT's zero-shot scores (masked and wild-type marginals, embedding distances) need masked inputs and
shared forwards that no sequence -> output map expresses; they stay in ``ntkit.tasks.variants``, which the
perturbation layer calls for the default predictor. SegmentNT and NTv3 (tracks, annotations) are
per-base predictors and plug in here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ntkit.models.ntv3.model import NTv3Model
from ntkit.models.segment_nt.model import SegmentNTModel
from ntkit.runtime import engine
from ntkit.tasks.finetune import FinetunedModel
from ntkit.tasks.splice import load_splice_model
from ntkit.tasks.splice.predict import iter_predict_windows
from ntkit.tasks.tracks import TrackModel, predict_windows
from ntkit.tasks.variants import fit_tokens


class Predictor:
    """The interface (see the module docstring)."""

    kind: str = "sequence"
    outputs: tuple[str, ...] = ()
    max_length: int = 0
    receptive_field: int = 0  # per-base predictors: bases each side a base's output depends on
    exact: bool = False  # per-base: nothing beyond the receptive field matters
    stranded: bool = False  # per-base: reads 5' -> 3' of a gene (minus-strand genes reverse-complemented)
    windowed: bool = False  # per-base: predicts windows of ``window()`` bases (see the module docstring)
    fixed_window: bool = False  # windowed: every input is exactly ``window()`` bases long
    probability: list[bool] | None = None  # per-base: which outputs are probabilities (None: all)
    model = None  # the torch module (its fingerprint names a job's results)

    def predict(self, sequences: Iterable[str], runtime=None) -> Iterator[np.ndarray]:
        """One output per sequence, in input order: [C] (sequence kind) or [len, C] (base kind)."""
        raise NotImplementedError

    def fit(self, seq: str) -> int:
        """Bases of ``seq`` read in one input: for a model on an NT base, those that fit its tokens
        (every N is a token of its own); all of them otherwise."""
        base = getattr(self.model, "base", None)
        if base is None:
            return len(seq)

        return fit_tokens(base.tokenizer, seq, base.config.max_tokens)

    def output_span(self, length: int) -> tuple[int, int]:
        """(start, stop): the bases of an input of ``length`` bases that the outputs cover."""
        return 0, length

    def is_probability(self, k: int) -> bool:
        return True if self.probability is None else bool(self.probability[k])

    def describe(self) -> dict:
        """What the predictor is, for job manifests and provenance."""
        return {"predictor": type(self).__name__, "outputs": list(self.outputs)}


class ZeroShot(Predictor):
    """NT's zero-shot scores (``ntkit.tasks.variants``: masked and wild-type marginals, embedding
    distances) of a pretrained model, with their shared forwards; ``score_options`` is resolved
    ``variants.ScoreOptions``."""

    kind = "lm"

    def __init__(self, model, score_options):
        self.model = model
        self.score_options = score_options
        self.outputs = tuple(score_options.columns())
        self.max_length = model.config.max_nucleotides

    def describe(self) -> dict:
        return {**super().describe(), "model": self.model.config.name}


class SequenceModel(Predictor):
    """A fine-tuned model (``ntkit finetune``): class probabilities ``prob_<class>`` or a value."""

    kind = "sequence"

    def __init__(self, finetuned):
        self.model = finetuned
        cfg = finetuned.cfg
        self.classification = cfg.task == "classification"
        self.classes = list(cfg.classes or range(cfg.n_classes)) if self.classification else []
        self.outputs = tuple(f"prob_{c}" for c in self.classes) if self.classification else ("value",)
        self.max_length = finetuned.base.config.max_nucleotides
        # The window a perturbation reads: the length the model was trained on (capped by its context).
        self.window_bp = min(cfg.sequence_bp or self.max_length, self.max_length)

    def predict(self, sequences: Iterable[str], runtime=None) -> Iterator[np.ndarray]:
        for y in self.model.iter_predict(sequences, runtime=runtime):
            yield np.atleast_1d(np.asarray(y, dtype=np.float64))

    def describe(self) -> dict:
        return {**super().describe(), "task": self.model.cfg.task, "classes": self.classes, "window_bp": self.window_bp}


class SpliceSites(Predictor):
    """A splice model (``ntkit splice train``): acceptor and donor probability per base, in the
    orientation of the sequence it reads (a gene's 5' -> 3')."""

    kind = "base"
    outputs = ("acceptor", "donor")
    stranded = True
    # SpliceAI's score names: acceptor/donor gain and loss.
    score_names = {"acceptor": ("AG", "AL"), "donor": ("DG", "DL")}

    def __init__(self, splice_model):
        self.model = splice_model
        base = splice_model.base
        nt_bp = base.config.max_nucleotides
        head = splice_model.head_kind
        conv = getattr(splice_model.head, "receptive_field", 1) // 2  # convolutional heads: bases each side
        # The bases-only head is a pure convolution (exact); NT's attention makes the others depend on their window.
        self.exact = head == "bases"
        self.receptive_field = conv if head != "linear" else 0
        self.max_length = nt_bp  # every head reads the bases its NT tokens cover

    def predict(self, sequences: Iterable[str], runtime=None) -> Iterator[np.ndarray]:
        for p in iter_predict_windows(self.model, sequences, runtime=runtime):
            yield p[:, 1:3]

    def describe(self) -> dict:
        return {**super().describe(), "head": self.model.head_kind, "method": self.model.method,
                "receptive_field": self.receptive_field, "exact": self.exact}


def load_predictor(base=None, *, adapter: str | Path | None = None, splice_model: str | Path | None = None,
                   track_model: str | Path | None = None, species: str | None = None, outputs=None,
                   force: bool = False) -> Predictor | None:
    """The predictor the options name on ``base`` (the loaded model): an adapter folder (``ntkit
    finetune``), a splice model folder, a track model folder (``ntkit tracks train``), a
    post-trained NTv3's tracks of ``species``; a SegmentNT model is its elements. ``None``: NT's
    zero-shot scores are meant. ``outputs``: only these of the predictor's outputs (``Selected``)."""
    given = [n for n, v in (("--adapter", adapter), ("--splice-model", splice_model), ("--track-model", track_model),
                            ("--species", species)) if v]
    if len(given) > 1:
        raise ValueError(f"give one of {', '.join(given)}, not several")
    p = None
    if adapter:
        p = SequenceModel(FinetunedModel.load_adapter(base, adapter, force=force))
    elif splice_model:
        p = SpliceSites(load_splice_model(splice_model, base, force=force))
    elif track_model or species:
        if not isinstance(base, NTv3Model):
            raise ValueError(f"{'--track-model' if track_model else '--species'} needs an NTv3 model (--model)")
        if track_model:
            p = TrainedTracks(TrackModel.load(base, track_model, force=force))
        elif not base.config.conditions_vocab_size:
            raise ValueError("--species: this NTv3 is pre-trained, without track heads (a post-trained model, or --track-model)")
        else:
            p = Tracks(base, species)
    elif isinstance(base, SegmentNTModel):  # no language-model head: its elements are what it predicts
        p = Elements(base)
    if outputs:
        if p is None:
            raise ValueError("--outputs selects outputs of a predictor (--adapter, --splice-model, --species, --track-model, SegmentNT)")
        p = Selected(p, outputs)
    return p


class Selected(Predictor):
    """Some outputs of another predictor (an NTv3 post-trained model predicts thousands of tracks),
    in the order given; everything else is the inner predictor's."""

    def __init__(self, inner: Predictor, names):
        missing = [n for n in names if n not in inner.outputs]
        if missing:
            shown = ", ".join(inner.outputs[:8]) + (", ..." if len(inner.outputs) > 8 else "")
            raise ValueError(f"no output named {', '.join(missing)}; this predictor has {len(inner.outputs)}: {shown}")
        self.inner = inner
        self.index = [inner.outputs.index(n) for n in names]
        self.outputs = tuple(names)
        self.probability = [inner.is_probability(i) for i in self.index]
        for k in ("kind", "max_length", "receptive_field", "exact", "stranded", "windowed", "fixed_window", "model"):
            setattr(self, k, getattr(inner, k))
        self.score_names = {o: n for o, n in getattr(inner, "score_names", {}).items() if o in names}

    def predict(self, sequences: Iterable[str], runtime=None) -> Iterator[np.ndarray]:
        for p in self.inner.predict(sequences, runtime):
            yield p[..., self.index]

    def fit(self, seq: str) -> int:
        return self.inner.fit(seq)

    def output_span(self, length: int) -> tuple[int, int]:
        return self.inner.output_span(length)

    def window(self, window_bp: int | None) -> int:
        return self.inner.window(window_bp)

    def valid(self, window: int, flank_bp: int | None = None) -> tuple[int, int]:
        return self.inner.valid(window, flank_bp)

    def describe(self) -> dict:
        return {**self.inner.describe(), "outputs": list(self.outputs)}


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)), probabilities clipped to [1e-7, 1 - 1e-7] (a certain class stays finite)."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


# -- region predictors: per-base models of whole windows (``ntkit.tasks.annotate``) ---------------------------------


class Elements(Predictor):
    """SegmentNT: the probability that each base belongs to each element type (``outputs``: the
    model's ``features``). The annotation job keeps each window's centre, ``flank_bp`` from its ends."""

    kind = "base"
    windowed = True
    fixed_window = False  # a region's last window may be shorter

    def __init__(self, model):
        self.model = model
        cfg = model.config
        self.outputs = tuple(cfg.features)
        self.probability = [True] * len(self.outputs)
        # Bases the backbone reads in one input (<cls> excluded), a multiple of the U-Net's 6 x 2**levels.
        unit = 6 * cfg.multiple
        self.max_length = (6 * (cfg.context_tokens - 1)) // unit * unit
        self.receptive_field = self.max_length

    def window(self, window_bp: int | None) -> int:
        w = window_bp or self.max_length
        if not 0 < w <= self.max_length:
            raise ValueError(f"window of {w} bases: this SegmentNT reads 1..{self.max_length} "
                             "(a longer context needs model.set_rescaling(tokens / 2048))")
        return w

    def valid(self, window: int, flank_bp: int | None) -> tuple[int, int]:
        f = window // 8 if flank_bp is None else flank_bp
        if not 0 <= 2 * f < window:
            raise ValueError(f"flank of {f} bases leaves nothing of a {window}-base window")
        return f, window - f

    def predict(self, sequences: Iterable[str], runtime=None) -> Iterator[np.ndarray]:
        yield from self.model.predict(list(sequences), runtime=runtime)

    def describe(self) -> dict:
        return {**super().describe(), "rescaling_factor": self.model.config.rescaling_factor}


class Tracks(Predictor):
    """An NTv3 post-trained model for one species: its predicted bigWig tracks (softplus values)
    and the probability of each BED element (``softmax[..., 1]``), per base of a window's centre
    crop (``keep_target_center_fraction``). Windows are multiples of the model's length rule."""

    kind = "base"
    windowed = True
    fixed_window = True  # the crop is a fixed fraction of the window

    def __init__(self, model, species: str, window_bp: int | None = None):
        self.model = model
        cfg = model.config
        self.species = species
        cfg.species_id(species)
        tracks = list(cfg.bigwigs_per_species.get(species, []))
        self.n_tracks = len(tracks)
        self.outputs = tuple(tracks + list(cfg.bed_elements_names))
        if not self.outputs:
            raise ValueError(f"{model.name_or_path}: no tracks for {species!r} and no BED elements")
        self.probability = [False] * len(tracks) + [True] * len(cfg.bed_elements_names)
        self.max_length = cfg.max_tokens
        self.default_window = window_bp

    def window(self, window_bp: int | None) -> int:
        m = self.model.config.multiple
        w = window_bp or self.default_window or min(self.max_length, 131_072)
        if w % m or not 0 < w <= self.max_length:
            raise ValueError(f"window of {w} bases: NTv3 windows are multiples of {m} up to {self.max_length:,}")
        return w

    def valid(self, window: int, flank_bp: int | None = None) -> tuple[int, int]:
        return self.output_span(window)

    def output_span(self, length: int) -> tuple[int, int]:
        return self.model.crop(length)

    def predict(self, sequences: Iterable[str], runtime=None) -> Iterator[np.ndarray]:
        import torch

        def forward(model, batch: list[str]):
            ids, _ = model.tokenizer.batch_encode(batch).to_torch(engine.model_device(model))
            out = model(ids, species=self.species, return_logits=False)
            res = []
            for r, s in enumerate(batch):
                a, b = model.crop(len(s))
                n = b - a
                parts = []
                if out.bigwig_tracks_logits is not None and self.n_tracks:
                    parts.append(out.bigwig_tracks_logits[r, :n, : self.n_tracks].float())
                if out.bed_tracks_logits is not None:
                    parts.append(out.bed_tracks_logits[r, :n].float().softmax(-1)[..., 1])
                res.append(torch.cat(parts, dim=-1).cpu().numpy())
            return res

        def checked(m: int = self.model.config.multiple):  # as they stream: a perturbation's alternatives are never all held
            for s in sequences:
                if len(s) % m:
                    raise ValueError(f"NTv3 track windows are multiples of {m} bases, got {len(s)}")
                yield s

        yield from engine.run(self.model, checked(), forward, length=len, runtime=runtime, desc="tracks", unit="window")

    def describe(self) -> dict:
        return {**super().describe(), "species": self.species}



class TrainedTracks(Predictor):
    """A track model of ``ntkit tracks train`` (``ntkit.tasks.tracks``): its tracks and element
    probabilities on the centre crop of windows of its training length."""

    kind = "base"
    windowed = True
    fixed_window = True

    def __init__(self, track_model):
        self.model = track_model
        cfg = track_model.cfg
        self.outputs = tuple(cfg.tracks + cfg.elements)
        self.probability = [False] * len(cfg.tracks) + [True] * len(cfg.elements)
        self.max_length = cfg.window_bp

    def window(self, window_bp: int | None) -> int:
        if window_bp not in (None, self.max_length):
            raise ValueError(f"this track model reads windows of {self.max_length} bases (its training length), not {window_bp}")
        return self.max_length

    def valid(self, window: int, flank_bp: int | None = None) -> tuple[int, int]:
        return self.model.crop(window)

    def output_span(self, length: int) -> tuple[int, int]:
        return self.model.crop(length)

    def predict(self, sequences: Iterable[str], runtime=None) -> Iterator[np.ndarray]:
        yield from predict_windows(self.model, sequences, runtime=runtime)

    def describe(self) -> dict:
        return {**super().describe(), "method": self.model.cfg.method, "crop_fraction": self.model.crop_fraction}
