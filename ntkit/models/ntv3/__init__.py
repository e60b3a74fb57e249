"""NTv3: the single-base U-Net Nucleotide Transformer (pre- and post-trained), its base tokenizer,
presets and Hugging Face layout (``core.*`` names, InstaDeep's ``config.json``)."""

from ntkit.models import registry
from ntkit.models.ntv3.model import (
    PRESETS,
    TRAINED_WEIGHTS,
    Conditioned,
    NTv3Config,
    NTv3Model,
    NTv3Output,
    build,
    is_ntv3_config,
    load_folder,
    save_folder,
)
from ntkit.models.ntv3.tokenizer import BaseTokenizer


def describe(model: NTv3Model) -> dict:
    cfg = model.config
    out = {**cfg.to_dict(), "kind": "post-trained" if cfg.conditions_vocab_size else "pre-trained", "length_multiple": cfg.multiple,
           "species": {s: len(cfg.bigwigs_per_species[s]) for s in cfg.species}, "bed_elements": cfg.bed_elements_names}
    out.pop("bigwigs_per_species", None)  # thousands of track names: `species` counts them, `ntkit info --tracks` lists them
    return out


FAMILY = registry.register(registry.Family(
    name="ntv3", model_class=NTv3Model, recognise=is_ntv3_config, load_folder=load_folder,
    save_folder=registry.safetensors_only(save_folder, "ntv3"), build=build, random_like=registry.rebuild(build), presets=PRESETS,
    trained_weights=TRAINED_WEIGHTS, description="NTv3 (single-base U-Net; post-trained: species, tracks, elements)",
    describe=describe))

__all__ = ["FAMILY", "BaseTokenizer", "Conditioned", "NTv3Config", "NTv3Model", "NTv3Output", "PRESETS", "build", "load_folder",
           "save_folder"]
