"""SegmentNT: genome elements at nucleotide resolution from an NT v2 backbone and a 1-D U-Net head."""

from ntkit.models import registry
from ntkit.models.segment_nt.model import (
                                           ELEMENTS_14,
                                           PRESETS,
                                           SegmentNTConfig,
                                           SegmentNTModel,
                                           SegmentNTOutput,
                                           build,
                                           is_segment_nt_config,
                                           load_folder,
                                           save_folder,
)

FAMILY = registry.register(registry.Family(
    name="segment_nt", model_class=SegmentNTModel, recognise=is_segment_nt_config, load_folder=load_folder,
    save_folder=registry.safetensors_only(save_folder, "segment_nt"), build=build, random_like=registry.rebuild(build),
    presets=PRESETS, description="SegmentNT (NT v2 backbone + U-Net head: elements per base)",
    describe=lambda model: {**model.config.to_dict(), "context_tokens": model.config.context_tokens}))

__all__ = ["ELEMENTS_14", "FAMILY", "PRESETS", "SegmentNTConfig", "SegmentNTModel", "SegmentNTOutput", "build", "load_folder",
           "save_folder"]
