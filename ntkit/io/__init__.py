"""Genomic inputs and the data folder: reference genomes and intervals (``genome``), annotations
(``annotation``: GTF/GFF, BED, SpliceAI's tables), sequences from FASTA or tables (``sequences``),
labelled tables and their classes (``labels``), the data shipped in the package (``shipped``) and
``ntkit data fetch`` (``datasets``), figures saved without pyplot (``plotting``).

Imports: ``ntkit.core`` and ``ntkit.runtime`` (atomic outputs).
"""
