"""What each dataset family needs in `data/raw`, and where it comes from (declarations only).

A dataset is one of three kinds (`DatasetSpec.kind`):
- `builtin`: ships with a Python package (digits, in scikit-learn); nothing to fetch;
- `download`: torchvision downloads it; its family declares `Resource`s read from the torchvision
  class's own mirror/URL and MD5 attributes, so the URLs and checksums are torchvision's;
- `local`: files the user puts in place (imagefolder); declared, never downloaded.

The pull itself (the `data` stage) is `benchmark.study.pull`: fetching files cannot change a
cell's number (torchvision's MD5 fixes the bytes), so it lives outside the cell layer and editing it
never re-runs a cell.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

KINDS = ("builtin", "download", "local")


@dataclass(frozen=True)
class Resource:
    """One file torchvision downloads: its mirrors (tried in order), name, MD5, and the folder (relative to
    the data root) it is downloaded and, for an archive, extracted into (the archive is then removed)."""

    urls: tuple[str, ...]
    filename: str
    md5: str
    folder: str = ""
    extract: bool = False


@dataclass(frozen=True)
class Source:
    """Where a dataset's files come from: `resources()` (read when pulling, so a test can point the
    torchvision class at another server), `present(root)`, what to put where (`where`), download size."""

    kind: str
    where: str = ""
    resources: Callable[[], list[Resource]] | None = None
    present: Callable[[Path], bool] | None = None
    download_bytes: int = 0  # approximate, for `python -m benchmark plan`


BUILTIN = Source("builtin")
