"""ntkit.models.registry: a family is a package plus one registration; the loader, ``ntkit info``
and ``ntkit convert`` find it with no edit of their own. Shown with a toy family defined here."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import ntkit
from ntkit.cli import main
from ntkit.models import registry


@dataclasses.dataclass
class ToyConfig:
    name: str = "toy"
    width: int = 8
    family = "toy"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ToyModel(nn.Module):
    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.proj = nn.Linear(config.width, config.width)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x):
        return self.proj(x)


def _build(config, seed=0, device=None, dtype=None):
    cfg = ToyConfig(**dataclasses.asdict(PRESETS[config])) if isinstance(config, str) else config
    torch.manual_seed(seed)
    return ToyModel(cfg).to(device=device, dtype=dtype)


def _load(directory: Path, config: dict, tensors: dict, device=None, dtype=None, check_finite=True):
    model = ToyModel(ToyConfig(name=config["name"], width=config["width"]))
    model.load_state_dict(tensors)
    return model.to(device=device or "cpu", dtype=dtype)


def _save(model, directory: Path, *, safe_serialization=True, tokenizer=True, extra_tensors=None, extra_config=None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps({"model_type": "toy", **model.config.to_dict()}))
    return directory


PRESETS = {"toy-tiny": ToyConfig(name="toy-tiny", width=4)}


@pytest.fixture
def toy():
    family = registry.register(registry.Family(
        name="toy", model_class=ToyModel, recognise=lambda d: d.get("model_type") == "toy", load_folder=_load, save_folder=_save,
        build=_build, random_like=registry.rebuild(_build), presets=PRESETS))
    yield family
    registry.unregister("toy")


def test_a_new_family_loads_saves_converts_and_describes_itself(toy, tmp_path, capsys):
    with pytest.warns(UserWarning, match="toy-tiny: randomly initialised weights"):
        model = ntkit.load("toy-tiny", seed=3)
    assert isinstance(model, ToyModel) and not model.training  # eval mode, as from_pretrained
    ntkit.save_checkpoint(model, tmp_path / "m")
    with pytest.warns(UserWarning, match="random weights of preset toy-tiny"):
        again = ntkit.load(tmp_path / "m")
    assert not again.training and all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert main(["convert", "toy-tiny", str(tmp_path / "c"), "--random-init", "--seed", "3"]) == 0
    assert load_file(str(tmp_path / "c" / "model.safetensors"))["proj.weight"].equal(model.proj.weight)
    assert main(["info", "toy-tiny"]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])  # after convert's line
    assert info["family"] == "toy" and info["width"] == 4 and info["parameters"] == 20
    assert info["jobs"]["embed"].startswith("unknown: the toy family has no row")  # until it fills its row of the job matrix
    other = toy.random_like(model, seed=4)
    assert other.config == model.config and not torch.equal(other.proj.weight, model.proj.weight)


def test_a_family_registers_once_and_claims_its_own_presets(toy):
    with pytest.raises(ValueError, match="already registered"):
        registry.register(toy)
    clash = dataclasses.replace(toy, name="toy2")
    with pytest.raises(ValueError, match=r"preset names \['toy-tiny'\] belong to another family"):
        registry.register(clash)
    with pytest.raises(ValueError, match="no model family recognises this configuration"):
        registry.for_config({"model_type": "bert"})


def test_a_folder_no_family_recognises_is_one_line(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"model_type": "bert"}')
    save_file({"x": torch.zeros(1)}, str(tmp_path / "m" / "model.safetensors"))
    with pytest.raises(ntkit.CheckpointError, match=r"config.json: no model family recognises this configuration \(model_type 'bert'"):
        ntkit.load(tmp_path / "m")
