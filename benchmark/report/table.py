"""The report's input: the study's table of cells (results.csv), read and checked."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmark.core.config import flatten
from benchmark.core.errors import UserError
from benchmark.core.io import read_json
from benchmark.core.paths import METRICS_FILE

STATUSES = ("finished", "failed", "missing")
REQUIRED_COLUMNS = ["cell", "method", "arch", "dataset", "seed", "operating_point", "status"]
TEXT_COLUMNS = [
    "cell",
    "method",
    "arch",
    "dataset",
    "operating_point",
    "granularity",
    "schedule",
    "tags",
    "control_of",
    "status",
    "error",
    "result_dir",
]


def load_results(path: Path) -> pd.DataFrame:
    """The study's cells from results.csv, checked: one-line UserError for a file the report cannot use.

    A header-only or empty file is a study with no cells (the report says so)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"results table {str(path)!r} not found; run the aggregate stage first (dvc repro aggregate)")
    if path.stat().st_size == 0:
        return pd.DataFrame(columns=REQUIRED_COLUMNS)
    try:
        frame = pd.read_csv(path, dtype={c: str for c in TEXT_COLUMNS}, keep_default_na=True, low_memory=False)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path.name} is not a readable CSV table: {str(exc).splitlines()[0]}") from None
    lacking = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if lacking:
        raise UserError(f"{path.name} lacks column{'s' if len(lacking) > 1 else ''} {', '.join(lacking)}")
    for column in TEXT_COLUMNS:
        if column in frame:  # plain Python strings: grouping 10,000 rows by Arrow-backed strings is ~2x slower
            frame[column] = frame[column].fillna("").astype(str).str.strip().astype(object)
    text = [c for c in REQUIRED_COLUMNS if c != "seed"]
    blank = frame[text].eq("")  # text columns are filled above: empty means blank
    bad = blank.any(axis=1) | ~frame["status"].isin(STATUSES)
    if bad.any():  # the first bad row, in file order
        i = bad.idxmax()
        if blank.loc[i].any():
            raise UserError(f"{path.name} row {i + 2}: empty {', '.join(c for c in text if blank.at[i, c])}")
        row = frame.loc[i]
        raise UserError(f"{path.name}: cell {row['cell']!r} has status {row['status']!r}; valid: {', '.join(STATUSES)}")
    seeds = pd.to_numeric(frame["seed"], errors="coerce")
    bad = frame.loc[seeds.isna() | (seeds != seeds.round()), "cell"]
    if not bad.empty:
        raise UserError(f"{path.name}: cell {bad.iloc[0]!r} has a seed that is not an integer")
    frame["seed"] = seeds.astype(int)
    twice = frame.loc[frame.duplicated("cell"), "cell"]
    if not twice.empty:
        raise UserError(f"{path.name}: cell {twice.iloc[0]!r} appears twice")
    same = frame.duplicated(["dataset", "arch", "method", "operating_point", "seed"])
    if same.any():
        row = frame[same].iloc[0]
        raise UserError(
            f"{path.name}: two cells for {row['method']} at {row['operating_point']} on "
            f"{row['dataset']}/{row['arch']} seed {row['seed']}"
        )
    return frame


def with_config_fields(cells: pd.DataFrame, fields: list[str], root: Path) -> pd.DataFrame:
    """`cells` with a column per config field (`train.epochs`, flattened as the config hash does), for the fields
    results.csv does not carry: read from each finished cell's metrics.json under `root` (blank where absent)."""
    missing = [f for f in fields if f not in cells]
    if not missing or cells.empty:
        return cells
    out = cells.copy()
    values: dict[str, list] = {f: [] for f in missing}
    for _, row in out.iterrows():
        config = {}
        if row["status"] == "finished" and row.get("result_dir"):
            metrics = read_json(Path(root) / row["result_dir"] / METRICS_FILE)
            if isinstance(metrics, dict) and isinstance(metrics.get("config"), dict):
                config = flatten(metrics["config"])
        for field in missing:
            values[field].append(config.get(field))
    for field in missing:
        out[field] = values[field]
    return out
