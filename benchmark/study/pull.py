"""The `data` stage's pull: every missing `download` dataset of a profile, fetched into `data/raw`.

Each dataset is downloaded with torchvision's `download_url` (which checks the MD5) into a staging
folder, its archives extracted there, and only then are the complete files moved into the data root:
an interrupted or corrupt download deletes its partial file and leaves nothing half-written.
Datasets are pulled in parallel with a socket timeout, so an offline machine learns within seconds
which datasets are missing, one line each, naming the files and where to put them. What to fetch
(`Resource`, `Source`) is declared by each dataset family in `benchmark/cell/data`.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import shutil
import socket
import tarfile
import urllib.error
import zipfile
from pathlib import Path

from torchvision.datasets.utils import check_integrity, download_url, extract_archive

from benchmark.cell.data.download import Resource, Source

TIMEOUT_ENV = "BENCHMARK_DOWNLOAD_TIMEOUT"  # seconds a connection may stall before a download counts as failed
DEFAULT_TIMEOUT = 5.0
STAGING = ".partial"  # under the data root: downloads in progress (removed when a pull ends)


class PullError(Exception):
    """A dataset that could not be put in place; the message is one line."""


def _timeout() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT


def _fetch(resource: Resource, staging: Path) -> None:
    """Download one resource into `staging/<folder>` (and extract it there); on any failure the partial
    file is deleted and a PullError says why (the last mirror's reason)."""
    folder = staging / resource.folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / resource.filename
    reason = "no mirror"
    for url in resource.urls:
        try:
            download_url(url, str(folder), resource.filename, resource.md5)
        except RuntimeError as exc:  # torchvision: "File not found or corrupted." after the MD5 check
            path.unlink(missing_ok=True)
            if "corrupted" not in str(exc) and "not found" not in str(exc):
                raise
            reason = (
                f"checksum mismatch for {resource.filename} from {url} (MD5 {resource.md5} expected); "
                "deleted the partial file"
            )
            continue
        except (urllib.error.URLError, OSError, ValueError) as exc:  # offline, refused, stalled, cut off
            path.unlink(missing_ok=True)
            detail = getattr(exc, "reason", None) or exc
            reason = f"cannot download {resource.filename} from {url} ({type(exc).__name__}: {detail})"
            continue
        if not check_integrity(str(path), resource.md5):  # belt and braces: never keep a file that fails
            path.unlink(missing_ok=True)
            reason = f"checksum mismatch for {resource.filename} from {url}; deleted the partial file"
            continue
        if resource.extract:
            extract_archive(str(path), str(folder), remove_finished=True)
        return
    raise PullError(reason)


def _move_into(staging: Path, root: Path) -> None:
    """Move every complete file from `staging` to the same place under `root` (files are replaced whole)."""
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = root / path.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)


def pull_one(name: str, source: Source, root: Path) -> str:
    """Put dataset `name` under `root`; returns 'present', 'downloaded', 'builtin' or 'local'.
    Raises PullError (one line) when it is missing and cannot be downloaded or is not in place."""
    root = Path(root)
    if source.kind == "builtin":
        return "builtin"
    if source.present is not None and source.present(root):
        return "present" if source.kind == "download" else "local"
    if source.kind == "local" or source.resources is None:
        raise PullError(f"dataset {name!r} is local data, not downloaded: put {source.where} under {str(root)!r}")
    root.mkdir(parents=True, exist_ok=True)
    staging = root / STAGING / name
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for resource in source.resources():
            _fetch(resource, staging)
        _move_into(staging, root)
    except PullError as exc:
        raise PullError(
            f"dataset {name!r} missing: {exc}; put {source.where} under {str(root)!r} "
            "(or `dvc pull data` from a DVC remote that has them)"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # the shared STAGING folder goes when the whole pull ends
    if source.present is not None and not source.present(root):
        raise PullError(f"dataset {name!r}: downloaded, but {source.where} is still not complete under {str(root)!r}")
    return "downloaded"


def pull(sources: dict[str, tuple[Source, Path]]) -> tuple[dict[str, str], list[str]]:
    """Pull every dataset in `sources` ({name: (source, its data root)}) in parallel; returns ({name: status}
    of those in place, [one error line per dataset that is not])."""
    done: dict[str, str] = {}
    errors: dict[str, str] = {}
    roots = sorted({Path(root) for _, root in sources.values()})
    missing = {folder for root in roots for folder in (root, *root.parents) if not folder.exists()}
    new_roots = sorted(missing, key=lambda folder: -len(folder.parts))  # deepest first, so each can go
    before = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_timeout())  # urllib (inside torchvision) has no timeout of its own
    try:
        with cf.ThreadPoolExecutor(max_workers=max(1, len(sources))) as pool:
            futures = {pool.submit(pull_one, name, src, Path(root)): name for name, (src, root) in sources.items()}
            for future in cf.as_completed(futures):
                name = futures[future]
                try:
                    done[name] = future.result()
                except PullError as exc:
                    errors[name] = str(exc)
                except (OSError, tarfile.TarError, zipfile.BadZipFile) as exc:  # a full disk, a broken archive
                    why = f"{type(exc).__name__}: {exc}"
                    errors[name] = f"dataset {name!r} not pulled: {why} (partial downloads removed)"
    finally:
        socket.setdefaulttimeout(before)
        # only now: removing it while another dataset's thread is creating its folder in it races
        for folder in [root / STAGING for root in roots] + new_roots:  # a pull that got nothing leaves nothing
            try:
                folder.rmdir()
            except OSError:
                pass  # never created, or not empty (left alone rather than lost)
    return dict(sorted(done.items())), [errors[n] for n in sorted(errors)]
