"""SpliceAI (Jaganathan et al., Cell 2019): splice-site probabilities per base from the bases alone
(``model``: the architecture, the ensemble, the incremental forward of alternative alleles;
``keras``: the published weights read from the ``spliceai`` package's ``.h5`` files with h5py).

``ntkit.load("spliceai")`` is the published ensemble of an installed ``spliceai`` package
(``pip install --no-deps spliceai``), ``ntkit.load(folder)`` the ``.h5`` files of a folder; the
presets (``spliceai-10k``, ``spliceai-tiny``) are the architectures with random weights, and a
SpliceAI-architecture model saved by ntkit is a ``config.json`` + ``model.safetensors`` folder.
The published weights are CC BY-NC 4.0 (``keras.LICENCE``): ntkit reads them, never ships them.
"""

from pathlib import Path

from ntkit.models import registry
from ntkit.models.spliceai.keras import LICENCE, SpliceAIWeightsError, installed_folder, is_weights_folder, load_published
from ntkit.models.spliceai.model import (
                                        CLASSES,
                                        PRESETS,
                                        SpliceAI,
                                        SpliceAIConfig,
                                        SpliceAINet,
                                        SpliceAIOutput,
                                        build,
                                        is_spliceai_config,
                                        load_folder,
                                        save_folder,
)

PUBLISHED = "spliceai"  # the name of the published ensemble (the installed package's weights)


def open_published(name_or_path, device=None, dtype=None):
    """``spliceai`` (the installed package's weights) or a folder of ``.h5`` files; None otherwise."""
    if str(name_or_path) == PUBLISHED and not Path(PUBLISHED).exists():
        return load_published(None, device=device, dtype=dtype)
    if is_weights_folder(name_or_path):
        return load_published(name_or_path, device=device, dtype=dtype)
    return None


FAMILY = registry.register(registry.Family(
    name="spliceai", model_class=SpliceAI, recognise=is_spliceai_config, load_folder=load_folder,
    save_folder=registry.safetensors_only(save_folder, "spliceai"), build=build, random_like=registry.rebuild(build),
    presets=PRESETS, description="SpliceAI (dilated residual CNN: acceptor/donor per base; published weights from the spliceai "
                                 "package, CC BY-NC 4.0)",
    describe=lambda model: {**model.config.to_dict(), "weights": model.name_or_path, "licence": model.licence or "-"},
    open=open_published))

__all__ = ["CLASSES", "FAMILY", "LICENCE", "PRESETS", "PUBLISHED", "SpliceAI", "SpliceAIConfig", "SpliceAINet", "SpliceAIOutput",
           "SpliceAIWeightsError", "build", "installed_folder", "load_published", "open_published"]
