"""Deprecated: the plugin API moved to `benchmark.api` (this name keeps plugins written for 0.1 working).

A method registered through here without `takes_sparsity` gets it inferred the way 0.1 did, by
asking its `check_args` whether it accepts `sparsity`, so an old plugin keeps its operating points.
"""

from __future__ import annotations

import warnings

from benchmark.api import MethodResult, MethodSpec
from benchmark.api import register_method as _register_method
from benchmark.core.errors import UserError

__all__ = ["MethodResult", "MethodSpec", "register_method"]

warnings.warn("benchmark.methods is deprecated: import from benchmark.api", DeprecationWarning, stacklevel=2)


def register_method(name, *, check_args=None, takes_sparsity=None, **kwargs):
    if takes_sparsity is None:
        takes_sparsity = False
        if callable(check_args):
            try:
                check_args({"sparsity": 0.5})
                takes_sparsity = True
            except UserError:
                pass
    return _register_method(name, check_args=check_args, takes_sparsity=takes_sparsity, **kwargs)
