"""The model families ntkit knows, and how a name, a ``config.json`` or a model finds its family.

A family (NT v1/v2, NTv3, SegmentNT, ...) is one package under ``ntkit.models`` that describes
itself once with ``register(Family(...))``: how to recognise its Hugging Face ``config.json``, its
presets (architectures by name) and the hub names of their trained weights, how to build a preset,
read and write a checkpoint folder, and re-initialise a model of the same architecture.
``ntkit.load``, ``ntkit info``, ``ntkit convert`` and every job go through this table; adding a
family is adding its package (and importing it in ``ntkit.models``), with no edit to the loader.

Families are asked in registration order, so one whose configs look like another's (SegmentNT's
``config.json`` is ESM's with ``features``) registers before the family it resembles.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class Family:
    """What the loader needs of a model family (see the module docstring).

    - ``recognise(config_json) -> bool``: a checkpoint's ``config.json`` is this family's;
    - ``load_folder(directory, config_json, tensors, device, dtype, check_finite) -> model``;
    - ``save_folder(model, directory, *, safe_serialization, tokenizer, extra_tensors, extra_config) -> Path``;
    - ``build(config_or_preset_name, seed, device, dtype) -> model`` (random weights, seeded);
    - ``random_like(model, seed) -> model``: the same architecture, re-initialised (baselines);
    - ``presets``: name -> config; ``trained_weights``: preset -> hub names of its published weights;
    - ``describe(model) -> dict``: what ``ntkit info`` prints of a model (default: its config);
    - ``open(name_or_path, device, dtype) -> model | None``: a name or a folder outside the HF layout
      that the family reads itself (SpliceAI: ``spliceai``, the installed package's published
      weights, or a folder of its Keras ``.h5`` files), None when it is not one.
    """

    name: str
    model_class: type
    recognise: Callable[[dict], bool]
    load_folder: Callable[..., Any]
    save_folder: Callable[..., Path]
    build: Callable[..., Any]
    random_like: Callable[..., Any]
    presets: Mapping[str, Any] = field(default_factory=dict)
    trained_weights: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    description: str = ""
    describe: Callable[[Any], dict] = lambda model: model.config.to_dict()
    open: Callable[..., Any] | None = None


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add a family (once: a second registration under the same name is an error)."""
    if family.name in _FAMILIES:
        raise ValueError(f"model family {family.name!r} is already registered")
    clash = set(family.presets) & {p for f in _FAMILIES.values() for p in f.presets}
    if clash:
        raise ValueError(f"model family {family.name!r}: preset names {sorted(clash)} belong to another family")
    _FAMILIES[family.name] = family
    return family


def unregister(name: str) -> None:
    """Remove a family (tests that register a toy family)."""
    _FAMILIES.pop(name, None)


def families() -> list[Family]:
    return list(_FAMILIES.values())


def get(name: str) -> Family:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}; registered: {', '.join(_FAMILIES)}") from None


def for_config(config_json: dict, where: str = "config.json") -> Family:
    """The family whose ``config.json`` this is."""
    for f in _FAMILIES.values():
        if f.recognise(config_json):
            return f
    raise ValueError(f"{where}: no model family recognises this configuration (model_type "
                     f"{config_json.get('model_type')!r}; families: {', '.join(_FAMILIES)})")


def for_model(model) -> Family:
    """The family of a model object (by class)."""
    for f in _FAMILIES.values():
        if isinstance(model, f.model_class):
            return f
    raise ValueError(f"{type(model).__name__} is not a model of a registered family ({', '.join(_FAMILIES)})")


def for_preset(name: str) -> Family | None:
    """The family that has a preset of this name, or None."""
    return next((f for f in _FAMILIES.values() if name in f.presets), None)


def open_named(name_or_path, device=None, dtype=None):
    """The model a family's ``open`` makes of a name or folder, or None when no family claims it."""
    for f in _FAMILIES.values():
        if f.open is not None and (model := f.open(name_or_path, device=device, dtype=dtype)) is not None:
            return model
    return None


def presets() -> dict[str, Any]:
    """Every family's presets: name -> config."""
    return {k: v for f in _FAMILIES.values() for k, v in f.presets.items()}


def trained_weights(preset: str) -> tuple[str, ...]:
    """Hub names of the published weights of a preset's architecture (none for CPU-sized presets)."""
    f = for_preset(preset)
    return tuple(f.trained_weights.get(preset, ())) if f else ()


def random_like(model, seed: int | None = 0):
    """The same architecture re-initialised through its family (the random baselines of the
    benchmark); a species-conditioned view (``backbone(species)``) stays conditioned."""
    raw = getattr(model, "unconditioned", model)
    fresh = for_model(raw).random_like(raw, seed)
    return fresh if raw is model else fresh.backbone(model.species)


def rebuild(build: Callable[..., Any]) -> Callable[..., Any]:
    """A family's ``random_like`` from its ``build``: the model's configuration, fresh weights
    (``seed``), on the model's device and in its dtype."""

    def random_like(model, seed: int | None = 0):
        p = next(model.parameters())
        return build(copy.deepcopy(model.config), seed=seed, device=p.device, dtype=p.dtype)

    return random_like


def safetensors_only(save_folder: Callable[..., Path], family: str) -> Callable[..., Path]:
    """A family's ``save_folder`` for a layout that holds its own tensors only (no task heads, no
    ``pytorch_model.bin``): the registry's signature, refusing what it cannot write."""

    def save(model, directory: Path, *, safe_serialization: bool = True, tokenizer: bool = True, extra_tensors=None,
             extra_config=None) -> Path:
        if extra_tensors or extra_config or not safe_serialization:
            raise ValueError(f"{family} checkpoints are written as safetensors without extra tensors")
        return Path(save_folder(model, directory, tokenizer=tokenizer))

    return save
