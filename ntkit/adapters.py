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
"""

from __future__ import annotations

from pathlib import Path

import torch.nn as nn

IA3_TARGETS = ["k_proj", "v_proj", "fc2"]
LORA_TARGETS = ["q_proj", "v_proj"]
CONFIG, WEIGHTS = "adapter_config.json", "adapter_model.safetensors"


def peft_config(method: str, rank: int = 8, alpha: float = 16.0):
    from peft import IA3Config, LoraConfig

    if method == "ia3":
        return IA3Config(target_modules=IA3_TARGETS, feedforward_modules=["fc2"])
    if method == "lora":
        return LoraConfig(r=rank, lora_alpha=alpha, target_modules=LORA_TARGETS, lora_dropout=0.0)
    raise ValueError(f"adapter method must be ia3 or lora, not {method!r}")


def attach(model: nn.Module, method: str, rank: int = 8, alpha: float = 16.0, config=None) -> nn.Module:
    """Inject an IA3 or LoRA adapter into ``model`` (in place; returns it). Only the adapter's
    parameters are new; the base parameters keep their ``requires_grad``."""
    from peft import inject_adapter_in_model

    frozen = {id(p): p.requires_grad for p in model.parameters()}
    inject_adapter_in_model(config or peft_config(method, rank, alpha), model)
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


def save(model: nn.Module, directory: str | Path) -> Path:
    """The adapter of ``model`` in peft's format (atomic files)."""
    import json

    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from .jobs import atomic_output, write_text_atomic

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    with atomic_output(d / WEIGHTS) as tmp:
        save_file(sd, str(tmp), metadata={"format": "pt"})
    write_text_atomic(d / CONFIG, json.dumps(model.peft_config["default"].to_dict(), indent=2, default=list))
    return d


def load(model: nn.Module, directory: str | Path) -> nn.Module:
    """Inject the adapter saved in ``directory`` (peft's format) into ``model`` and load its weights."""
    from peft import PeftConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    d = Path(directory)
    try:
        config = PeftConfig.from_pretrained(str(d))
    except Exception as e:
        raise ValueError(f"{d / CONFIG}: not a peft adapter configuration ({e})") from None
    attach(model, "", config=config)
    result = set_peft_model_state_dict(model, load_file(str(d / WEIGHTS)))
    missing = [k for k in getattr(result, "unexpected_keys", []) or []]
    if missing:
        raise ValueError(f"{d / WEIGHTS}: tensors that fit no adapter layer, e.g. {missing[:3]}")
    return model
