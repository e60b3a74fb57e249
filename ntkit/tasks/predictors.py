"""Predictors: what a model says about a DNA sequence, behind one interface, so that every
perturbation (``ntkit.tasks.perturb``: VCF variant effects, saturation mutagenesis) runs over any of them.

A predictor maps sequences to outputs, through ``ntkit.runtime.engine``:

- ``kind = "sequence"``: one vector per sequence (``outputs`` names its entries), e.g. a fine-tuned
  classifier's class probabilities or a regressor's value (``SequenceModel``);
- ``kind = "base"``: one vector per base, ``[len, C]`` (e.g. acceptor and donor probabilities of a
  splice model, ``SpliceSites``; any PyTorch module on one-hot DNA, ``OneHotModel``, SpliceAI's
  published ensemble among them, ``spliceai_predictor``); ``stranded`` predictors read a sequence 5' -> 3' of its gene, so
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

import json
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from ntkit.core.sequence import one_hot, reverse_complement
from ntkit.models.checkpoint import load
from ntkit.models.ntv3.model import NTv3Model
from ntkit.models.segment_nt.model import SegmentNTModel
from ntkit.models.spliceai import PUBLISHED, SpliceAI, is_spliceai_config
from ntkit.models.spliceai.keras import is_weights_folder
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


class OneHotModel(Predictor):
    """Any ``torch.nn.Module`` that maps one-hot DNA to per-base outputs, as a per-base predictor:
    every perturbation job (``score-variants``, ``mutagenesis``) and the splice jobs run on it.

    What the module is declared to be:

    - ``outputs``: the names of the output channels kept (``select``: their indices in the
      module's output, default all, in order); ``probability``: which are probabilities (gains and
      losses are reported) and which track values (sums), default all probabilities;
    - ``layout``: ``"BLC"`` (inputs [batch, length, 4], outputs [batch, length', C]) or ``"BCL"``
      (inputs [batch, 4, length], outputs [batch, C, length']); one-hot order A, C, G, T, other
      bases all zeros; ``forward(module, x) -> tensor`` when the module's output is a structure;
    - ``flank``: bases the module crops from each end (outputs for bases [flank, L - flank));
      ``receptive_field``: bases each side of a base that its output depends on (default ``flank``:
      a model that crops what it cannot see, as SpliceAI); given, the module is *exact* (outputs
      farther than that from the ends do not depend on the input's length), so windows of any
      length batch together padded with N; None: inputs batch only with inputs of their length;
    - ``stranded``: it reads a gene 5' -> 3' (splice models: variants are scored per gene, as
      SpliceAI); ``max_length``: the longest input it takes.

    A module with ``alternative_probabilities`` (``SpliceAI``) computes an allele's outputs from
    its reference window's activations (``alternatives``); others run both windows in full."""

    kind = "base"
    # Alleles computed together from a reference's activations: each holds [channels, up to 2 x
    # flank] per layer (SpliceAI: ~1.3 MB), so 64 keep a batch near 0.3 GB and the convolutions busy.
    alleles_per_batch = 64

    def __init__(self, module, outputs, *, select=None, layout: str = "BLC", flank: int = 0, receptive_field: int | None = None,
                 probability=None, stranded: bool = False, max_length: int = 1_000_000, forward=None, name: str | None = None,
                 score_names=None):
        if layout not in ("BLC", "BCL"):
            raise ValueError(f"layout must be BLC ([batch, length, 4]) or BCL ([batch, 4, length]), not {layout!r}")
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"a OneHotModel wraps a torch.nn.Module, not {type(module).__name__}")
        self.model, self.outputs, self.layout = module, tuple(outputs), layout
        self.select = list(select) if select is not None else None
        if self.select is not None and len(self.select) != len(self.outputs):
            raise ValueError(f"{len(self.select)} selected channels for {len(self.outputs)} output names")
        self.flank = int(flank)
        self.receptive_field = self.flank if receptive_field is None and self.flank else (receptive_field or 0)
        self.exact = receptive_field is not None or self.flank > 0
        self.probability = list(probability) if probability is not None else None
        self.stranded, self.max_length = stranded, max_length
        self.forward_fn = forward or (lambda m, x: m(x))
        self.name = name or type(module).__name__
        if score_names:
            self.score_names = dict(score_names)

    def output_span(self, length: int) -> tuple[int, int]:
        return self.flank, length - self.flank

    def _run(self, model, batch: list[str]) -> list[np.ndarray]:
        dev = engine.model_device(model)
        n = max(len(s) for s in batch)
        x = np.zeros((len(batch), n, 4), dtype=np.float32)
        for i, s in enumerate(batch):
            x[i, : len(s)] = one_hot(s.upper())
        x = torch.from_numpy(x).to(dev)
        y = self.forward_fn(model, x if self.layout == "BLC" else x.transpose(1, 2))
        y = (y if self.layout == "BLC" else y.transpose(1, 2)).float()
        if self.select is not None:
            y = y[..., self.select]
        y = y.cpu().numpy()
        return [y[i, : len(s) - 2 * self.flank] for i, s in enumerate(batch)]

    def predict(self, sequences: Iterable[str], runtime=None) -> Iterator[np.ndarray]:
        """[len - 2 * flank, C] per sequence (the bases [flank, len - flank))."""

        def forward(model, batch: list[str]):
            if self.exact or len({len(s) for s in batch}) == 1:
                return self._run(model, batch)
            return [self._run(model, [s])[0] for s in batch]  # not exact: no padding

        def checked():
            for s in sequences:
                if not 2 * self.flank < len(s) <= self.max_length:
                    raise ValueError(f"{self.name} reads {2 * self.flank + 1}..{self.max_length} bases, got {len(s)}")
                yield s

        yield from engine.run(self.model, checked(), forward, length=len, runtime=runtime, desc=self.name, unit="window")

    def alternatives(self, references: list[str], alleles: list[tuple[int, int, int, str]], radius: int,
                     runtime=None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Outputs of reference windows and of alleles applied to them: ``alleles`` as (window,
        start in it, reference length, alternative bases); per reference its outputs
        ([len - 2 * flank, C]), per allele those at the positions [p - radius, p + len(alt) +
        radius) of its alternative window (a flanked predictor: each window holds ``flank`` bases
        beyond those). A module with ``alternative_probabilities`` computes the alleles from the
        references' activations, in groups of references (its memory); others run every window."""
        if not hasattr(self.model, "alternative_probabilities"):
            refs = list(self.predict(references, runtime))
            alt_windows = [references[t][:p] + alt + references[t][p + lr:] for t, p, lr, alt in alleles]
            alts = [y[p - radius - self.flank: p + len(alt) + radius - self.flank]
                    for (t, p, lr, alt), y in zip(alleles, self.predict(alt_windows, runtime))]
            return refs, alts
        return self._patched(references, alleles, radius, runtime)

    def _patched(self, references, alleles, radius, runtime):
        rt = engine.as_runtime(runtime)
        by_ref: dict[int, list[int]] = {}
        for k, (t, *_rest) in enumerate(alleles):
            by_ref.setdefault(t, []).append(k)
        refs: list = [None] * len(references)
        alts: list = [None] * len(alleles)
        group = max(1, rt.batch_size or 4)  # reference windows traced together (their activations are this method's memory)
        with engine.inference_session(self.model, rt.device) as dev:
            for g0 in range(0, len(references), group):
                g = list(range(g0, min(g0 + group, len(references))))
                x_ref = torch.from_numpy(np.stack([one_hot(references[t].upper()) for t in g])).to(dev)
                ks = sorted((k for t in g for k in by_ref.get(t, [])), key=lambda k: len(alleles[k][3]))
                local = {t: i for i, t in enumerate(g)}
                # Alleles batch at one alternative length A: a shorter one is extended by the reference
                # bases after it (on both alleles: the same change), up to 32 bases; its outputs are the first.
                batches, cur = [], []
                for k in ks:
                    if cur and (len(cur) == self.alleles_per_batch or len(alleles[k][3]) - len(alleles[cur[0]][3]) > 32):
                        batches.append(cur)
                        cur = []
                    cur.append(k)
                batches.append(cur)
                for i_b, kb in enumerate(batches):
                    A = max((len(alleles[k][3]) for k in kb), default=1)
                    ext = [(alleles[k][3] + references[alleles[k][0]][alleles[k][1] + alleles[k][2]:][: A - len(alleles[k][3])],
                            alleles[k][2] + A - len(alleles[k][3])) for k in kb]
                    if any(len(a) < A for a, _ in ext):  # an allele at a window's end: no bases to extend it with
                        raise ValueError("an allele too close to its window's end to batch; a window longer than the flank is needed")
                    tile = torch.tensor([local[alleles[k][0]] for k in kb], dtype=torch.long, device=dev)
                    p = torch.tensor([alleles[k][1] for k in kb], dtype=torch.long, device=dev)
                    dl = torch.tensor([lr - A for _, lr in ext], dtype=torch.long, device=dev)
                    xp = torch.from_numpy(np.stack([one_hot(a.upper()) for a, _ in ext]) if kb
                                          else np.zeros((0, A, 4), np.float32)).to(dev)
                    ref_p, alt_p = self.model.alternative_probabilities(x_ref, tile, p, dl, xp, radius)
                    if i_b == 0:
                        for t, y in zip(g, ref_p.float().cpu().numpy()):
                            refs[t] = y[..., self.select] if self.select is not None else y
                    for k, y in zip(kb, alt_p.float().cpu().numpy()):
                        y = y[: len(alleles[k][3]) + 2 * radius]
                        alts[k] = y[..., self.select] if self.select is not None else y
        return refs, alts

    def describe(self) -> dict:
        return {**super().describe(), "module": self.name, "flank": self.flank, "receptive_field": self.receptive_field,
                "exact": self.exact, "stranded": self.stranded, "layout": self.layout,
                **({"licence": self.model.licence} if getattr(self.model, "licence", None) else {})}


def spliceai_predictor(model) -> OneHotModel:
    """SpliceAI (``ntkit.models.spliceai``: the published ensemble or a model of its architecture) as
    a stranded per-base predictor of acceptor and donor probabilities."""
    return OneHotModel(model, ("acceptor", "donor"), select=[1, 2], flank=model.flank, stranded=True,
                       forward=lambda m, x: m(x).probabilities, name=model.config.name, score_names=SpliceSites.score_names)


def splice_window_probabilities(predictor: Predictor, data, genome=None, runtime=None, max_run: int = 200_000) -> list[np.ndarray]:
    """Per window of ``data`` (``splice.SpliceWindows``, transcript orientation): float32 [len, 3]
    class probabilities (neither = 1 - acceptor - donor) from a per-base splice predictor that
    crops a flank (SpliceAI): each window is read with ``flank`` bases of ``genome`` each side (N
    beyond a contig's ends); without a genome, with N there (less context than the model knows).
    With a genome, windows of one strand that touch or overlap are read as one input (up to
    ``max_run`` bases): the flanks are read once per run instead of once per window."""
    if not (predictor.kind == "base" and predictor.stranded and tuple(predictor.outputs) == ("acceptor", "donor")):
        raise ValueError("splice windows need a splice predictor (acceptor and donor per base)")
    F = getattr(predictor, "flank", 0)

    def with_neither(y) -> np.ndarray:
        y = np.asarray(y, dtype=np.float32)
        return np.concatenate([1 - y.sum(1, keepdims=True), y], axis=1)

    if genome is None or not F:
        return [with_neither(y) for y in predictor.predict(("N" * F + seq + "N" * F for seq in data.sequences), runtime)]
    runs: list[list] = []  # [contig, strand, lo, hi, [window indices]]
    order = sorted(range(len(data)), key=lambda i: (data.chrom[i], data.strand[i], data.start[i]))
    for i in order:
        c, s0 = genome.resolve(data.chrom[i]), data.start[i]
        e0 = s0 + len(data.sequences[i])
        r = runs[-1] if runs else None
        if r and r[0] == c and r[1] == data.strand[i] and s0 <= r[3] and max(r[3], e0) - r[2] <= max_run:
            r[3] = max(r[3], e0)
            r[4].append(i)
        else:
            runs.append([c, data.strand[i], s0, e0, [i]])

    def inputs():
        for c, strand, lo, hi, _ in runs:
            seq = genome.fetch_padded(c, lo - F, hi + F)
            yield seq if strand == "+" else reverse_complement(seq)

    out: list = [None] * len(data)
    for (c, strand, lo, hi, idx), y in zip(runs, predictor.predict(inputs(), runtime)):
        y = with_neither(y)  # [hi - lo, 3] in the run's orientation
        for i in idx:
            s0, e0 = data.start[i], data.start[i] + len(data.sequences[i])
            out[i] = y[s0 - lo : e0 - lo] if strand == "+" else y[hi - e0 : hi - s0]
    return out


def is_spliceai(splice_model) -> bool:
    """``--splice-model`` names SpliceAI: ``spliceai`` (the installed weights), a folder of its
    ``.h5`` files or a SpliceAI-architecture checkpoint folder (else: a folder of ``ntkit splice train``)."""
    if isinstance(splice_model, SpliceAI):
        return True
    p = Path(str(splice_model))
    if str(splice_model) == PUBLISHED and not p.exists():
        return True
    if is_weights_folder(p):
        return True
    if not (p / "config.json").is_file() or (p / "splice_config.json").exists():
        return False
    try:
        return is_spliceai_config(json.loads((p / "config.json").read_text()))
    except (ValueError, UnicodeDecodeError):
        return False  # not a readable config: the splice model loader says what is wrong with it


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
    elif splice_model and is_spliceai(splice_model):
        p = spliceai_predictor(splice_model if isinstance(splice_model, SpliceAI) else load(splice_model))
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
    elif isinstance(base, SpliceAI):  # --model spliceai: its splice sites
        p = spliceai_predictor(base)
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
        self.flank = getattr(inner, "flank", 0)
        self.score_names = {o: n for o, n in getattr(inner, "score_names", {}).items() if o in names}

    def predict(self, sequences: Iterable[str], runtime=None) -> Iterator[np.ndarray]:
        for p in self.inner.predict(sequences, runtime):
            yield p[..., self.index]

    def fit(self, seq: str) -> int:
        return self.inner.fit(seq)

    def alternatives(self, references, alleles, radius, runtime=None):
        refs, alts = self.inner.alternatives(references, alleles, radius, runtime)
        return [r[..., self.index] for r in refs], [a[..., self.index] for a in alts]

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
