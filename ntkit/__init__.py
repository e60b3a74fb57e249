"""ntkit: the Nucleotide Transformer family (NT v1/v2, NTv3, SegmentNT) in PyTorch.

The public names: ``load`` (a checkpoint folder, a hub name or a preset of any family, in eval
mode), ``save_checkpoint``, ``Runtime`` (where and how models run), NT's ``build`` / ``get_preset``
/ ``NTModel`` / ``Tokenizer``. The layers below (``ntkit.core``, ``ntkit.runtime``, ``ntkit.io``,
``ntkit.models``, ``ntkit.tasks``, ``ntkit.hf``, ``ntkit.cli``) each say what lives in them.
"""

import importlib

from ntkit.core import __version__

# The public names, imported when first used (PEP 562): ``import ntkit`` (and the command line's
# ``ntkit --help``) loads no torch until a model is asked for.
_PUBLIC = {
    "CheckpointError": "ntkit.models.checkpoint", "load": "ntkit.models.checkpoint", "load_checkpoint": "ntkit.models.checkpoint",
    "save_checkpoint": "ntkit.models.checkpoint", "PRESETS": "ntkit.models.nt.config", "NTConfig": "ntkit.models.nt.config",
    "get_preset": "ntkit.models.nt.config", "NTModel": "ntkit.models.nt.model", "NTOutput": "ntkit.models.nt.model",
    "build": "ntkit.models.nt.model", "Tokenizer": "ntkit.models.nt.tokenizer", "TokenBatch": "ntkit.models.tokenization",
    "Runtime": "ntkit.runtime.engine",
}


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ntkit' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_PUBLIC))


__all__ = [
    "CheckpointError", "NTConfig", "NTModel", "NTOutput", "PRESETS", "Runtime", "TokenBatch", "Tokenizer", "__version__",
    "build", "get_preset", "load", "load_checkpoint", "save_checkpoint",
]
