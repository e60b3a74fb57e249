"""How work runs, whatever the model or the data: the inference engine (``engine``: ``Runtime``,
token-budget batches in input order), the job framework (``jobs``: atomic outputs, shards, parts,
resume, verified merges, provenance) and the training loop of every head (``training``).

Imports: ``ntkit.core`` only.
"""
