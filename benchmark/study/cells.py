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
from benchmark.study.profiles import Profile

OWN_RATE = "own"  # folder label of a method that finds its own rate (dense, EDropout)


@dataclass
class Cell:
    """One unit of work: a config, the folder its result goes to, and the cell it needs first."""

    config: RunConfig
    out: Path
    operating_point: str  # 'dense', the method's own rate ('edropout'), a rate like '0.5', or 'matched'
    after: Path | None = None  # result folder this cell reads before it can start (EDropout's, for 'matched')

    @property
    def label(self) -> str:
        cfg = self.config
        point = "" if self.operating_point in (cfg.method, "dense") else f" @{self.operating_point}"
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


def _rate_cell(profile: Profile, results: Path, base: RunConfig, point: float | str, edropout: Path | None) -> Cell:
    cfg = copy.deepcopy(base)
    cfg.method_args["sparsity"] = point
    if profile.finetune_epochs is not None and "finetune_epochs" not in cfg.method_args:
        cfg.method_args["finetune_epochs"] = profile.finetune_epochs
    if point == "matched":
        return Cell(cfg, folder_of(results, "cells", cfg, "matched"), "matched", edropout)
    return Cell(cfg, folder_of(results, "cells", cfg, f"s{point:g}"), f"{point:g}")


def method_cells(profile: Profile, results: Path) -> list[Cell]:
    """Every pruning cell of a profile: method x dataset x arch x seed x operating point.

    Methods that declare `takes_sparsity` get one cell per operating point; the others (EDropout)
    one cell at their own rate. A `matched` cell waits for the EDropout cell of the same dataset,
    arch, seed and profile settings.
    """
    cells = []
    for dataset in profile.datasets:
        for arch in profile.archs:
            for seed in profile.seeds:
                edropout = None
                if "edropout" in profile.methods:
                    edropout = folder_of(results, "cells", profile.config("edropout", dataset, arch, seed), OWN_RATE)
                for method in profile.methods:
                    spec = get_method(method)
                    if spec.is_reference:
                        continue
                    base = profile.config(method, dataset, arch, seed)
                    if not spec.takes_sparsity:
                        cells.append(Cell(base, folder_of(results, "cells", base, OWN_RATE), method))
                        continue
                    cells += [_rate_cell(profile, results, base, point, edropout) for point in profile.operating_points]
    return cells
