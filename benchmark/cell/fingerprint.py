"""The code fingerprint of a cell: the code that can change its result, found from the package layout.

A cell's result depends on the cell layer (`benchmark/cell/`), the EDropout library, the method's
own file (and, for a control, the file of the method it controls) and the dataset's own file.
Everything else (core utilities such as errors, config parsing and MLflow logging; the study,
report and tools layers; other methods' and datasets' files) cannot change a number in
metrics.json, so editing it never re-runs a cell. Which files are datasets' own files is read
from the dataset registry, not from a list of names.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from benchmark.cell.data import DATASETS, DatasetSpec
from benchmark.cell.plugins import METHODS
from benchmark.cell.spec import MethodSpec
from benchmark.core.paths import PROJECT_ROOT

CELL_LAYER = PROJECT_ROOT / "benchmark" / "cell"
LIBRARIES = (PROJECT_ROOT / "edropout",)


def fingerprint_files(method: MethodSpec, dataset: DatasetSpec) -> list[Path]:
    """Every file a cell of `method` on `dataset` depends on, in a fixed order."""
    sources = tuple(spec.source for spec in map(DATASETS.get, DATASETS.names()) if spec.source)
    owns = [dataset.source, method.source]
    if method.control_of is not None and method.control_of in METHODS:  # a control runs its method's code
        owns.append(METHODS.get(method.control_of).source)
    return list(_files(sources, tuple(owns)))


@functools.lru_cache(maxsize=256)
def _files(family_sources: tuple[str, ...], owns: tuple[str | None, ...]) -> tuple[Path, ...]:
    """The common files, then each own file once (listed once per process and combination: a study of
    10,000 cells asks ~10,000 times for a few dozen combinations)."""
    common, resolved = _common_files(family_sources)
    files = list(common)
    for own in owns:
        if own and Path(own).is_file() and Path(own).resolve() not in resolved:
            files.append(Path(own))
            resolved = resolved | {Path(own).resolve()}
    return tuple(files)


@functools.lru_cache(maxsize=16)
def _common_files(family_sources: tuple[str, ...]) -> tuple[tuple[Path, ...], frozenset[Path]]:
    """The cell layer's files but the dataset families' own, then the libraries' (and their resolved paths):
    the same for every cell of a study, so listed once per process (the code does not change under it)."""
    families = {Path(source).resolve() for source in family_sources}
    shared = [p for p in sorted(CELL_LAYER.rglob("*.py")) if p.resolve() not in families]
    files = tuple(shared + [p for root in LIBRARIES for p in sorted(root.rglob("*.py"))])
    return files, frozenset(f.resolve() for f in files)


def code_fingerprint(method: MethodSpec, dataset: DatasetSpec) -> str:
    """Hash of the code a cell's result depends on. A finished cell counts as done only while it holds."""
    return _fingerprint(tuple(str(p) for p in fingerprint_files(method, dataset)))


@functools.cache
def _fingerprint(files: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for name in files:
        path = Path(name)
        try:  # paths inside the project are hashed relative to it, so another clone gets the same hash
            label = str(path.resolve().relative_to(PROJECT_ROOT))
        except ValueError:
            label = path.name
        h.update(label.encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()[:16]
