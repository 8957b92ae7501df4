"""Each bundle's recipe rules, in code: how its settings become a network, a preprocessing chain, crops and handlers.

The bundle configs wire these factories; the rules (which depend on a branch count, a training mode or the authors'
choices) live here, with their sources, instead of in ``$`` expressions.
"""

from monai_exudate.recipes import common, exudate_dsm, hrdecoder

__all__ = ["common", "exudate_dsm", "hrdecoder"]
