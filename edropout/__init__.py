"""EDropout: energy-based population search over binary pruning masks (Salehinejad & Valaee, 2022).

An importable library for any PyTorch training loop; it holds no experiment code (no MLflow,
DVC or file layout). `EDropout` is the controller (see `edropout.controller` for the loop),
`fit` the one-call trainer.
"""

from edropout.batchnorm import recalibrate_batchnorm
from edropout.config import EDropoutConfig
from edropout.controller import EDropout, Generation
from edropout.energy import cross_entropy_energy, margin_energy
from edropout.trainer import fit
from edropout.units import Coverage, UnitLayout, coverage, find_units, shrink

__all__ = [
    "Coverage",
    "EDropout",
    "EDropoutConfig",
    "Generation",
    "UnitLayout",
    "coverage",
    "cross_entropy_energy",
    "find_units",
    "fit",
    "margin_energy",
    "recalibrate_batchnorm",
    "shrink",
]
__version__ = "0.1.0"
