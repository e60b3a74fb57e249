"""The model families and what they share.

- ``registry``: the families and how a name, a ``config.json`` or a model finds its family;
- ``checkpoint``: HF-layout folders, hub names and presets for every family (``ntkit.load``);
- ``tokenization``: the tokenizer protocol (transformers' call, ``batch_encode``, ``TokenBatch``);
- ``adapters``: IA3 / LoRA through peft on any family;
- one package per family, each registering itself: ``nt`` (NT v1/v2, 6-mer tokenizer), ``ntv3``
  (single-base U-Net, base tokenizer), ``segment_nt`` (SegmentNT on an NT v2 backbone), ``spliceai``
  (SpliceAI's dilated CNN; the published weights read from the ``spliceai`` package).

A new family is a package here that calls ``registry.register`` and is imported below.

Imports: ``ntkit.core``, ``ntkit.runtime`` (and ``ntkit.io`` where a model reads files).
"""

from ntkit.models import nt, ntv3, segment_nt, spliceai  # noqa: F401  (each package registers its family)
