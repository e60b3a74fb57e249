"""SpliceAI's published weights: the five Keras models of the ``spliceai`` package
(``spliceai/models/spliceai{1..5}.h5``), read with h5py (no TensorFlow, no Keras).

The weights are Illumina's, licensed CC BY-NC 4.0 (non-commercial use): ntkit never ships or
copies them; it reads them where the user installed them (``pip install --no-deps spliceai``: the
package's own imports need Keras 2 and ``pkg_resources``, so it is located without being
imported) or from a folder the user gives.

A Keras ``.h5`` holds the model's graph (``model_config``: layers and which layer feeds which) and
each layer's weights. The graph is walked from the input (stem convolution, skip convolution,
residual units as BatchNorm -> ReLU -> Conv -> BatchNorm -> ReLU -> Conv -> Add, a 1x1 tap into
the skip sum after some units, the softmax convolution after the crop), so that the architecture
is read from the file (kernels, dilations, channels), checked against what ``SpliceAINet``
computes, and every tensor lands in its place by role, not by layer number.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

import h5py
import numpy as np
import torch

from ntkit.models.spliceai.model import SpliceAI, SpliceAIConfig

LICENCE = ("SpliceAI's trained weights (Jaganathan et al., Cell 2019) are Illumina's, licensed CC BY-NC 4.0: "
           "non-commercial use only; ntkit reads them from your installation and never redistributes them")
MODEL_FILES = tuple(f"spliceai{i}.h5" for i in range(1, 6))
INSTALL = "pip install --no-deps spliceai"


class SpliceAIWeightsError(ValueError):
    """Weights that cannot be found or read (a one-line message: what to install or pass)."""


def installed_folder() -> Path:
    """The ``models`` folder of the installed ``spliceai`` package, found without importing it."""
    spec = importlib.util.find_spec("spliceai")  # finds the package; does not run its __init__
    roots = list(spec.submodule_search_locations or []) if spec else []
    if not roots:
        try:
            roots = [Path(str(importlib.metadata.distribution("spliceai").locate_file("spliceai")))]
        except importlib.metadata.PackageNotFoundError:
            roots = []
    for root in roots:
        d = Path(root) / "models"
        if all((d / f).is_file() for f in MODEL_FILES):
            return d
    raise SpliceAIWeightsError(f"SpliceAI's weights were not found: `{INSTALL}` installs them (no TensorFlow needed), or pass "
                               f"a folder holding {', '.join(MODEL_FILES)}")


ANNOTATIONS = ("grch37", "grch38")


def annotation_file(name: str) -> Path:
    """The installed package's gene table ``grch37`` or ``grch38`` (SpliceAI's ``-A``)."""
    if name not in ANNOTATIONS:
        raise ValueError(f"SpliceAI's gene tables are {' and '.join(ANNOTATIONS)}, not {name!r}")
    p = installed_folder().parent / "annotations" / f"{name}.txt"
    if not p.is_file():
        raise SpliceAIWeightsError(f"{p} not found: reinstall with `{INSTALL}`, or give a transcript table or GTF")
    return p


def model_files(folder: str | Path) -> list[Path]:
    """The ``.h5`` files of a folder: ``spliceai1.h5`` ... ``spliceai5.h5``, or any ``*.h5`` (an ensemble of those)."""
    d = Path(folder)
    files = [d / f for f in MODEL_FILES if (d / f).is_file()] or sorted(d.glob("*.h5"))
    if not files:
        raise SpliceAIWeightsError(f"{d}: no SpliceAI .h5 models (expected {', '.join(MODEL_FILES)}; `{INSTALL}` installs them)")
    return files


def is_weights_folder(path: str | Path) -> bool:
    d = Path(path)
    return d.is_dir() and not (d / "config.json").exists() and any(d.glob("*.h5"))


def _graph(path: Path, f) -> tuple[dict, dict]:
    try:
        raw = f.attrs["model_config"]
        cfg = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        layers = {l["config"]["name"]: l for l in cfg["config"]["layers"]}
    except (KeyError, ValueError, TypeError) as e:
        raise SpliceAIWeightsError(f"{path}: not a Keras model file (no readable model_config: {type(e).__name__})") from None
    consumers: dict[str, list[dict]] = {}
    for l in layers.values():
        for node in l.get("inbound_nodes") or []:
            for inbound in node:
                consumers.setdefault(inbound[0], []).append(l)
    return layers, consumers


def read_network(path: str | Path) -> tuple[SpliceAIConfig, dict[str, torch.Tensor]]:
    """(architecture, state dict of one ``SpliceAINet``) from one Keras ``.h5`` file."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise SpliceAIWeightsError(f"{path}: not a readable HDF5 file ({e}); reinstall with `{INSTALL}`") from None
    with f:
        layers, consumers = _graph(path, f)
        weights = f["model_weights"] if "model_weights" in f else f

        def bad(what: str):
            return SpliceAIWeightsError(f"{path}: {what}: not SpliceAI's architecture")

        def one(name: str, cls: str, pred=lambda l: True) -> dict:
            c = [l for l in consumers.get(name, []) if l["class_name"] == cls and pred(l)]
            if len(c) != 1:
                raise bad(f"{len(c)} {cls} layers read {name}")
            return c[0]

        def tensors(layer: dict) -> dict[str, np.ndarray]:
            name = layer["config"]["name"]
            g = weights[name]
            out = {}
            g.visititems(lambda k, v: out.__setitem__(k.split("/")[-1].split(":")[0], np.asarray(v)) if hasattr(v, "shape") else None)
            return out

        def conv(layer: dict) -> dict[str, torch.Tensor]:
            t = tensors(layer)
            return {"weight": torch.from_numpy(t["kernel"].transpose(2, 1, 0).copy()), "bias": torch.from_numpy(t["bias"].copy())}

        def bn(layer: dict) -> dict[str, torch.Tensor]:
            t = tensors(layer)
            return {"weight": torch.from_numpy(t["gamma"]), "bias": torch.from_numpy(t["beta"]),
                    "running_mean": torch.from_numpy(t["moving_mean"]), "running_var": torch.from_numpy(t["moving_variance"])}

        is_1x1 = lambda l: l["config"]["kernel_size"] in ([1], 1)  # noqa: E731
        inputs = [l for l in layers.values() if l["class_name"] == "InputLayer"]
        if len(inputs) != 1:
            raise bad(f"{len(inputs)} inputs")
        stem = one(inputs[0]["config"]["name"], "Conv1D")
        sd: dict[str, torch.Tensor] = {}
        sd.update({f"stem.{k}": v for k, v in conv(stem).items()})
        sd.update({f"skip.{k}": v for k, v in conv(one(stem["config"]["name"], "Conv1D", is_1x1)).items()})
        cur, kernels, dilations, taps, eps = stem["config"]["name"], [], [], [], set()
        while any(l["class_name"] == "BatchNormalization" for l in consumers.get(cur, [])):
            i = len(kernels)
            bn1 = one(cur, "BatchNormalization")
            c1 = one(one(bn1["config"]["name"], "Activation")["config"]["name"], "Conv1D")
            bn2 = one(c1["config"]["name"], "BatchNormalization")
            c2 = one(one(bn2["config"]["name"], "Activation")["config"]["name"], "Conv1D")
            add = one(c2["config"]["name"], "Add")
            if {n[0] for node in add["inbound_nodes"] for n in node} != {c2["config"]["name"], cur}:
                raise bad(f"{add['config']['name']} does not add the unit's input")
            k, d = c1["config"]["kernel_size"][0], c1["config"]["dilation_rate"][0]
            if (c2["config"]["kernel_size"][0], c2["config"]["dilation_rate"][0]) != (k, d):
                raise bad(f"unit {i + 1}'s convolutions differ")
            kernels.append(k)
            dilations.append(d)
            eps |= {bn1["config"]["epsilon"], bn2["config"]["epsilon"]}
            for name, part in (("bn1", bn(bn1)), ("conv1", conv(c1)), ("bn2", bn(bn2)), ("conv2", conv(c2))):
                sd.update({f"units.{i}.{name}.{k_}": v for k_, v in part.items()})
            cur = add["config"]["name"]
            tap = [l for l in consumers.get(cur, []) if l["class_name"] == "Conv1D" and is_1x1(l)]
            if tap:
                sd.update({f"dense.{len(taps)}.{k_}": v for k_, v in conv(tap[0]).items()})
                taps.append(i + 1)
        out = [l for l in layers.values() if l["class_name"] == "Conv1D" and l["config"].get("activation") == "softmax"]
        crops = [l["config"]["cropping"] for l in layers.values() if l["class_name"] == "Cropping1D"]
        if len(out) != 1 or not kernels or len(eps) != 1:
            raise bad("no single softmax output, no residual units or mixed BatchNorm epsilons")
        sd.update({f"out.{k}": v for k, v in conv(out[0]).items()})
    every = taps[0]
    cfg = SpliceAIConfig(name=path.stem, channels=int(sd["stem.weight"].shape[0]), kernels=tuple(kernels), dilations=tuple(dilations),
                         dense_every=every, n_models=1, eps=float(eps.pop()))
    if cfg.taps != taps or [list(c) if isinstance(c, (list, tuple)) else [c, c] for c in crops] != [[cfg.flank, cfg.flank]]:
        raise bad(f"taps after units {taps} and crop {crops}, expected {cfg.taps} and {cfg.flank}")
    return cfg, sd


def load_published(folder: str | Path | None = None, device=None, dtype=None) -> SpliceAI:
    """SpliceAI's ensemble from the ``.h5`` files of ``folder`` (default: the installed package's),
    in eval mode, ``licence`` and ``name_or_path`` set (the weights' licence: ``LICENCE``)."""
    d = Path(folder) if folder is not None else installed_folder()
    files = model_files(d)
    nets = [read_network(p) for p in files]
    cfg = nets[0][0]
    for p, (c, _) in zip(files, nets):
        if (c.channels, c.kernels, c.dilations) != (cfg.channels, cfg.kernels, cfg.dilations):
            raise SpliceAIWeightsError(f"{p}: a different architecture from {files[0].name}; an ensemble needs one")
    n = len(cfg.kernels)
    name = {(32, 4): "spliceai-80nt", (32, 8): "spliceai-400nt", (32, 12): "spliceai-2k", (32, 16): "spliceai-10k"}.get((cfg.channels, n), "spliceai")
    cfg = SpliceAIConfig(name=name, channels=cfg.channels, kernels=cfg.kernels, dilations=cfg.dilations, dense_every=cfg.dense_every,
                         n_models=len(files), eps=cfg.eps)
    model = SpliceAI(cfg)
    for net, (_, sd) in zip(model.nets, nets):
        net.load_state_dict(sd)
    model.licence = LICENCE
    model.name_or_path = str(d)
    model.weights_files = [str(p) for p in files]
    return model.to(device=device, dtype=dtype).eval()
