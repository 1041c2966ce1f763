"""The cells a profile expands to, each with the folder its result is addressed by.

A cell's folder is `<stage>/<dataset>/<arch>/seed<k>/<method>/<point>-<config hash>` under the
results root (`core.paths.cell_folder`): the coordinates stay browsable, and a what-if with other
method settings gets another hash, so it lands beside the earlier result instead of over it. The
hash is of the cell's declared config (a `matched` rate is resolved only when the cell runs).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from benchmark.cell.plugins import get_method
from benchmark.core.config import RunConfig, config_hash
from benchmark.core.paths import cell_folder
from benchmark.study.profiles import EDROPOUT, Profile, point_label

OWN_RATE = "own"  # folder label of a method that finds its own rate (dense, EDropout)


@dataclass
class Cell:
    """One unit of work: a config, the folder its result goes to, and the cell it needs first."""

    config: RunConfig
    out: Path
    # 'dense', the method's own rate ('edropout'), a rate like '0.5' or 'matched'; with several EDropout
    # points, '@<point>' names the one an EDropout, control or matched cell belongs to ('matched@p_init=0.3')
    operating_point: str
    after: Path | None = None  # result folder this cell reads first (EDropout's, for 'matched' and `from_twin`)

    @property
    def label(self) -> str:
        cfg = self.config
        point = self.operating_point.removeprefix(f"{cfg.method}@")
        point = "" if point in (cfg.method, "dense") else f" @{point}"
        return f"{cfg.method} {cfg.data.name}/{cfg.model.arch} seed{cfg.seed}{point}"


def folder_of(results: Path, stage: str, cfg: RunConfig, point: str) -> Path:
    """The result folder of the cell `cfg` at `point` (`own`, `s<rate>` or `matched`)."""
    return cell_folder(results, stage, cfg.data.name, cfg.model.arch, cfg.seed, cfg.method, point, config_hash(cfg))


def dense_cells(profile: Profile, results: Path) -> list[Cell]:
    """The dense reference cells of a profile: one per (dataset, arch, seed)."""
    cells = []
    for dataset in profile.datasets:
        for arch in profile.archs:
            for seed in profile.seeds:
                cfg = profile.config("dense", dataset, arch, seed)
                cells.append(Cell(cfg, folder_of(results, "dense", cfg, OWN_RATE), "dense"))
    return cells


def with_point(label: str, point: dict) -> str:
    """An operating-point label for one EDropout point: 'matched' -> 'matched@p_init=0.3' (unchanged
    for EDropout's default point)."""
    suffix = point_label(point)
    return f"{label}@{suffix}" if suffix else label


def _rate_cell(
    profile: Profile, results: Path, base: RunConfig, point: float | str, edropout: Path | None, twin_point: dict
) -> Cell:
    cfg = copy.deepcopy(base)
    cfg.method_args["sparsity"] = point
    if profile.finetune_epochs is not None and "finetune_epochs" not in cfg.method_args:
        cfg.method_args["finetune_epochs"] = profile.finetune_epochs
    if point == "matched":
        if twin_point:  # one matched cell per EDropout point: the point is part of its declared config
            cfg.method_args["matched_from"] = str(edropout.relative_to(results))
        return Cell(cfg, folder_of(results, "cells", cfg, "matched"), with_point("matched", twin_point), edropout)
    return Cell(cfg, folder_of(results, "cells", cfg, f"s{point:g}"), f"{point:g}")


def _cells_of(profile: Profile, results: Path, method: str, where: tuple, twins: dict[str, Path | None]) -> list[Cell]:
    """The cells of one method at one (dataset, arch, seed)."""
    spec = get_method(method)
    if method == EDROPOUT or spec.control_of == EDROPOUT:  # one cell per EDropout point
        out = []
        for point in profile.edropout_points:
            cfg = profile.config(method, *where, point)
            after = twins[point_label(point)] if spec.from_twin else None
            out.append(Cell(cfg, folder_of(results, "cells", cfg, OWN_RATE), with_point(method, point), after))
        return out
    base = profile.config(method, *where)
    if not spec.takes_sparsity:
        return [Cell(base, folder_of(results, "cells", base, OWN_RATE), method)]
    out = []
    for rate in profile.operating_points:
        if rate != "matched":
            out.append(_rate_cell(profile, results, base, rate, None, {}))
            continue
        for point in profile.edropout_points:
            out.append(_rate_cell(profile, results, base, rate, twins[point_label(point)], point))
    return out


def method_cells(profile: Profile, results: Path) -> list[Cell]:
    """Every pruning cell of a profile: method x dataset x arch x seed x operating point.

    Methods that declare `takes_sparsity` get one cell per operating point; EDropout and its controls
    one cell per EDropout point (`edropout_points`, e.g. p_init values); other methods one cell at
    their own rate. A `matched` cell (one per EDropout point) and a control that reads EDropout's
    result (`from_twin`) wait for the EDropout cell of the same dataset, arch, seed and settings.
    """
    cells = []
    for dataset in profile.datasets:
        for arch in profile.archs:
            for seed in profile.seeds:
                twins: dict[str, Path | None] = {}
                for point in profile.edropout_points:
                    twin = None
                    if EDROPOUT in profile.methods:
                        twin = folder_of(
                            results, "cells", profile.config(EDROPOUT, dataset, arch, seed, point), OWN_RATE
                        )
                    twins[point_label(point)] = twin
                for method in profile.methods:
                    if not get_method(method).is_reference:
                        cells += _cells_of(profile, results, method, (dataset, arch, seed), twins)
    return cells
