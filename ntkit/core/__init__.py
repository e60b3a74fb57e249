"""The bottom layer: what every other layer uses and that knows nothing of genomes, models or jobs.

- ``fields``: checks of configuration dataclasses against their annotations;
- ``sequence``: reverse complement and base codes.

Imports: nothing of ntkit.
"""

__version__ = "0.1.0"
