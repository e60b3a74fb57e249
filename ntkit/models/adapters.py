"""Parameter-efficient adapters, through peft: IA3 (as in NT) and LoRA on an ``NTModel``.

IA3 (Liu et al. 2022, used by NT): learned vectors, initialised at 1, rescale element-wise the
output of every attention layer's key and value projections (``k_proj``, ``v_proj``) and the
input of the FFN's second projection (``fc2``: the intermediate activation). LoRA (Hu et al.
2021): ``W x + (alpha / r) B A x`` on the query and value projections, B initialised at zero, so
training starts from the base model. peft injects its layers into the model in place
(``attach``); ``detach`` puts the original ``nn.Linear`` modules back (the base unchanged) and
``merge`` folds the adapter into them (peft's ``merge_and_unload``: a plain ``NTModel`` again,
savable as a checkpoint). On disk an adapter is peft's own format: ``adapter_config.json`` +
``adapter_model.safetensors`` (the head a task adds is saved beside it by its owner; peft's
``modules_to_save=["head"]`` is not used because it would also match ``lm_head``).

``save_adapted`` / ``load_adapted`` keep what a training added to a base model (the adapter, the
task's modules, a JSON of its recipe) apart from the base, with the base's fingerprint: loading
refuses missing adapter weights, tensors of the wrong shape and, unless ``force``, a base model
with other weights than the one the adapter was trained on (the same shape is not enough: an
adapter on another base gives other predictions without a word).
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

from ntkit.models import checkpoint
from ntkit.models.checkpoint import HUB_ID as _HUB_ID
from ntkit.models.checkpoint import save_checkpoint
from ntkit.runtime.jobs import atomic_output, weights_fingerprint, write_text_atomic

ADAPTER_TENSORS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "ia3_l")  # peft's names
IA3_TARGETS = ["k_proj", "v_proj", "fc2"]
LORA_TARGETS = ["q_proj", "v_proj"]
CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
# Tensor names in the adapter file: peft's layout for the ``ntkit.hf`` classes (the encoder at
# ``.nt``, a sequence head at ``.classifier``), so that ``peft.PeftModel.from_pretrained`` applies
# an ntkit adapter to them; ntkit reads both these and the bare module paths of earlier files.
PEFT_PREFIX, PEFT_HEAD = "base_model.model.nt.", "base_model.model.classifier."


# NTv3's modules for the same roles (key, value, FFN output; query, value).
NTV3_IA3_TARGETS = ["key_head.linear", "value_head.linear", "fc2"]
NTV3_LORA_TARGETS = ["query_head.linear", "value_head.linear"]


def peft_config(method: str, rank: int = 8, alpha: float = 16.0, family: str = "nt"):
    from peft import IA3Config, LoraConfig

    ia3, lora = (NTV3_IA3_TARGETS, NTV3_LORA_TARGETS) if family == "ntv3" else (IA3_TARGETS, LORA_TARGETS)
    if method == "ia3":
        return IA3Config(target_modules=ia3, feedforward_modules=["fc2"])
    if method == "lora":
        return LoraConfig(r=rank, lora_alpha=alpha, target_modules=lora, lora_dropout=0.0)
    raise ValueError(f"adapter method must be ia3 or lora, not {method!r}")


def attach(model: nn.Module, method: str, rank: int = 8, alpha: float = 16.0, config=None) -> nn.Module:
    """Inject an IA3 or LoRA adapter into ``model`` (in place; returns it). Only the adapter's
    parameters are new; the base parameters keep their ``requires_grad``."""
    from peft import inject_adapter_in_model

    frozen = {id(p): p.requires_grad for p in model.parameters()}
    family = getattr(getattr(model, "config", None), "family", "nt")
    inject_adapter_in_model(config or peft_config(method, rank, alpha, family), model)
    for p in model.parameters():  # peft freezes what it did not add: give the base its own flags back
        if id(p) in frozen:
            p.requires_grad_(frozen[id(p)])
    return model


def _tuner_layers(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    out = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, BaseTunerLayer):
                out.append((parent, name, child))
    return out


def has_adapter(model: nn.Module) -> bool:
    return bool(_tuner_layers(model))


def detach(model: nn.Module) -> nn.Module:
    """Remove the adapter: the original modules back, their weights as they were."""
    for parent, name, layer in _tuner_layers(model):
        setattr(parent, name, layer.get_base_layer())
    model.__dict__.pop("peft_config", None)  # peft's record of what it injected
    return model


def merge(model: nn.Module) -> nn.Module:
    """Fold the adapter into the base weights and remove it (peft's ``merge_and_unload``)."""
    for parent, name, layer in _tuner_layers(model):
        layer.merge()
        setattr(parent, name, layer.get_base_layer())
    model.__dict__.pop("peft_config", None)
    return model


def adapter_parameters(model: nn.Module) -> int:
    from peft import get_peft_model_state_dict

    return sum(v.numel() for v in get_peft_model_state_dict(model).values())


def save(model: nn.Module, directory: str | Path, head: nn.Module | None = None) -> Path:
    """The adapter of ``model`` in peft's format (atomic files), names as ``ntkit.hf``'s classes
    have them (``PEFT_PREFIX``); ``head``: a sequence head saved as peft's ``modules_to_save``
    (``classifier``); ``base_model_name_or_path``: the base as the user named it."""
    import json

    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    sd = {PEFT_PREFIX + k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    if head is not None:
        sd.update({PEFT_HEAD + k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()})
    with atomic_output(d / WEIGHTS) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt"})
    cfg = model.peft_config["default"].to_dict()

    name = getattr(model, "name_or_path", None) or model.config.name
    repo, at, _ = name.rpartition("@")  # a hub model is named repo@commit; peft wants the repo alone
    cfg["base_model_name_or_path"] = repo if at and _HUB_ID.fullmatch(repo) else name
    if head is not None:
        cfg["modules_to_save"] = ["classifier"]
    write_text_atomic(d / CONFIG, json.dumps(cfg, indent=2, default=list))
    return d


def base_fingerprint(model: nn.Module) -> str:
    """The fingerprint of ``model`` without any adapter: its configuration and base weights under
    their plain names (``q_proj.base_layer.weight`` counts as ``q_proj.weight``)."""
    tensors = [(k.replace(".base_layer.", "."), v) for k, v in model.state_dict().items()
               if not any(f".{a}." in k or k.endswith(f".{a}") for a in ADAPTER_TENSORS)]
    return weights_fingerprint(model.config.to_dict(), tensors)


def load(model: nn.Module, directory: str | Path) -> nn.Module:
    """Inject the adapter saved in ``directory`` (peft's format) into ``model`` and load its weights."""
    from peft import PeftConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    d = Path(directory)
    try:
        config = PeftConfig.from_pretrained(str(d))
    except Exception as e:
        raise ValueError(f"{d / CONFIG}: not a peft adapter configuration ({e})") from None
    if not (d / WEIGHTS).exists():
        raise ValueError(f"{d}: {WEIGHTS} is missing (the adapter's weights); without them the base model alone would "
                         "predict: copy the whole adapter folder")
    config.modules_to_save = None  # the head is its owner's (saved beside the adapter too)
    tensors = {}
    for k, v in load_file(str(d / WEIGHTS)).items():
        if k.startswith(PEFT_HEAD):
            continue
        tensors[k.removeprefix(PEFT_PREFIX).removeprefix("base_model.model.")] = v
    attach(model, "", config=config)
    try:
        result = set_peft_model_state_dict(model, tensors)
    except RuntimeError as e:  # torch's "size mismatch for ..." paragraph
        detach(model)
        raise ValueError(f"{d / WEIGHTS}: tensors of the wrong shape for this base model "
                         f"({' '.join(str(e).split())[:160]})") from None
    missing = [k for k in getattr(result, "unexpected_keys", []) or []]
    if missing:
        raise ValueError(f"{d / WEIGHTS}: tensors that fit no adapter layer, e.g. {missing[:3]}")
    return model


def save_adapted(directory: str | Path, base: nn.Module, parts: dict[str, nn.Module | None], meta: dict, *, full: bool,
                 weights: str, config: str, peft_head: str | None = None) -> Path:
    """What training added to a base model, apart from it: the peft adapter injected into the
    base, if any (``adapter_config.json`` + ``adapter_model.safetensors``), every module of
    ``parts`` in one safetensors file (``<part>.<parameter>`` keys), ``meta`` with the base's
    configuration and fingerprint in JSON, and for full fine-tuning the whole base (``base/``, HF
    layout). ``peft_head``: the part that is also the peft adapter's ``classifier`` (a sequence
    head, for ``ntkit.hf.NTForSequenceClassification``). Files are atomic."""
    import json

    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {f"{name}.{k}": v.detach().cpu().contiguous() for name, mod in parts.items() if mod is not None
               for k, v in mod.state_dict().items()}
    if full:
        save_checkpoint(base, d / "base")
    if has_adapter(base):
        save(base, d, head=parts.get(peft_head) if peft_head else None)
    with atomic_output(d / weights) as tmp:
        save_file(tensors, str(tmp))
    about = {"base_config": base.config.to_dict(), "base_fingerprint": base_fingerprint(base),
             "base_model": getattr(base, "name_or_path", None) or base.config.name}
    write_text_atomic(d / config, json.dumps({**meta, **about}, indent=2))
    return d


def read_meta(directory: Path, config: str) -> dict:
    """The JSON of ``save_adapted`` in ``directory`` (``config``: its file name); an unreadable or
    foreign file is an error naming it."""
    import json

    try:
        meta = json.loads((directory / config).read_text())
        meta["base_config"].get("name")
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as e:
        raise ValueError(f"{directory / config}: unreadable ({type(e).__name__}: {e}); not a folder written by ntkit") from None
    return meta


def check_base(directory: Path, meta: dict, base: nn.Module, *, force: bool = False, fix: str = "--force") -> None:
    """``base`` must be the model the adapter in ``directory`` was trained on (``meta``: the JSON of
    ``save_adapted``): the same configuration, and the same weights (fingerprint) unless ``force``."""
    trained_on = meta.get("base_model") or meta["base_config"].get("name")
    if base.config.to_dict() != meta["base_config"]:
        raise ValueError(f"{directory} was trained on {trained_on}, whose configuration differs from the given base model's")
    given = getattr(base, "name_or_path", None) or base.config.name
    if meta.get("base_fingerprint") and not force and base_fingerprint(base) != meta["base_fingerprint"]:
        raise ValueError(f"{directory} was trained on {trained_on} ({meta['base_fingerprint']}); the given base {given} has other "
                         f"weights ({base_fingerprint(base)}): its predictions would be wrong without a word. Give the base "
                         f"it was trained on, or {fix} to use this one anyway")


def load_adapted(directory: str | Path, base: nn.Module | None, *, full: bool, weights: str, config: str, force: bool = False):
    """(base, {part: state dict}, meta) of a folder written by ``save_adapted``, the saved peft
    adapter injected into the base. The given base must be the one the parts were trained on:
    same configuration, and the same weights unless ``force`` (for full fine-tuning the saved base
    is used). Errors name the file and what differs."""
    from safetensors.torch import load_file

    d = Path(directory)
    meta = read_meta(d, config)
    trained_on = meta.get("base_model") or meta["base_config"].get("name")
    if full:
        base = checkpoint.load(d / "base")
    if base is None:
        raise ValueError(f"{d} holds an adapter of a base model ({trained_on}): give that base model (--model)")
    check_base(d, meta, base, force=force or full)
    method = meta.get("method") or meta.get("finetune", {}).get("method")
    if method in ("ia3", "lora") or (d / CONFIG).exists():
        if not (d / CONFIG).exists():
            raise ValueError(f"{d}: {CONFIG} is missing for a {method} adapter: copy the whole adapter folder")
        load(base, d)
    try:
        tensors = load_file(str(d / weights))
    except (OSError, Exception) as e:  # safetensors raises its own error types
        raise ValueError(f"{d / weights}: unreadable ({type(e).__name__}); copy the adapter folder again") from None
    parts: dict[str, dict] = {}
    for k, v in tensors.items():
        name, _, key = k.partition(".")
        parts.setdefault(name, {})[key] = v
    return base, parts, meta


def load_part(module: nn.Module, state: dict | None, where: str | Path) -> nn.Module:
    """``module.load_state_dict(state)`` with a one-line error naming the file and the mismatch."""
    if state is None:
        raise ValueError(f"{where}: no tensors for this part")
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        lines = [l.strip() for l in str(e).splitlines() if "size mismatch" in l or "Missing key" in l or "Unexpected key" in l]
        raise ValueError(f"{where}: tensors do not fit ({'; '.join(lines)[:200] or ' '.join(str(e).split())[:200]}); "
                         "the file or its configuration was edited") from None
    return module


class Adapted(nn.Module):
    """A base model adapted for a task: the base, how it is adapted (``method``) and the task's
    ``head`` (built by the subclass, ``finetune.FinetunedModel``, ``splice.SpliceModel``, before the
    adapter is injected: the head is initialised first, from the same random state).

    ``ia3`` / ``lora``: a peft adapter injected into the base in place (``attach_adapter``; a model
    loaded from disk gets its adapter from the folder instead), the base's own weights fixed;
    ``full``: every base weight trains; ``head`` / ``frozen``: the base fixed, the head alone trains.
    ``uses_base=False`` (a head that reads the bases only) fixes the base whatever the method."""

    def __init__(self, base: nn.Module, method: str, head: nn.Module, *, attach_adapter: bool = True, uses_base: bool = True,
                 rank: int = 8, alpha: float = 16.0):
        super().__init__()
        self.base, self.method, self.head = base, method, head
        for p in base.parameters():
            p.requires_grad_(method == "full" and uses_base)
        if attach_adapter and uses_base and method in ("ia3", "lora"):
            attach(base, method, rank, alpha)

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def merged(self) -> nn.Module:
        """The base with the adapter folded into its weights (peft's ``merge_and_unload``): a plain
        ``NTModel``; the head is not part of it."""
        return merge(self.base)
