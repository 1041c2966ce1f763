"""EDropout: energy-based population search over binary pruning masks (Salehinejad & Valaee, 2022).

The library is importable on its own, with no experiment code in it. See ../shared/EDROPOUT.md
for the method and the open issue that builds it.
"""

__version__ = "0.0.0"
