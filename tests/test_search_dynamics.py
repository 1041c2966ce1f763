"""EDropout's search-dynamics figure: one line per run up to MAX_CURVES runs, the median and band above."""

from __future__ import annotations

import json
import math

import pandas as pd
from PIL import Image

from benchmark.report.search_figure import MAX_CURVES, search_dynamics


def _curve(seed: int, n: int = 30) -> dict:
    best = [10.0 * math.exp(-s / 8) + 0.1 * seed for s in range(n)]
    return {
        "step": list(range(n)),
        "best_energy": best,
        "mean_energy": [b + 1.0 for b in best],
        "kept_fraction": [1.0 - 0.02 * s for s in range(n)],
    }


def _cells(root, runs: int, points=("p_init=0.3", "p_init=0.5")) -> pd.DataFrame:
    rows = []
    for i in range(runs):
        seed, point = i // len(points), points[i % len(points)]
        folder = f"results/edropout/seed{seed}-{point}"
        (root / folder).mkdir(parents=True)
        converged = 10 + seed if seed % 3 else None  # every third seed runs to the end
        (root / folder / "metrics.json").write_text(
            json.dumps({"search_curve": _curve(seed), "converged_step": converged})
        )
        rows.append(
            {
                "cell": f"edropout/digits/test_resnet/seed{seed}@{point}",
                "method": "edropout",
                "dataset": "digits",
                "arch": "test_resnet",
                "seed": seed,
                "edropout_point": point,
                "status": "finished",
                "result_dir": folder,
            }
        )
    return pd.DataFrame(rows)


def test_few_runs_are_drawn_one_line_each(tmp_path):
    figures, notes = search_dynamics(_cells(tmp_path, 4), tmp_path / "figures", tmp_path)
    assert notes == [] and [f.name for f in figures] == ["search_digits_test_resnet.png"]
    caption = figures[0].caption
    assert "4 seeds" in caption and "median" not in caption
    assert "no convergence step (the search ran to the end) for seed 0, 0" in caption


def test_many_runs_are_drawn_as_the_median_and_band_of_each_point(tmp_path):
    runs = 2 * MAX_CURVES + 2  # MAX_CURVES + 1 seeds at each of two EDropout points
    figures, notes = search_dynamics(_cells(tmp_path, runs), tmp_path / "figures", tmp_path)
    assert notes == []
    (figure,) = figures
    caption = figure.caption
    assert f"{runs} seeds" in caption and f"more than {MAX_CURVES} runs" in caption
    converged = [10 + s for s in range(MAX_CURVES + 1) if s % 3]
    for point in ("p_init=0.3", "p_init=0.5"):
        expected = f"{point}: {MAX_CURVES + 1} runs, median convergence step {pd.Series(converged).median():g}"
        assert f"{expected} ({len(converged)} converged)" in caption
    with Image.open(tmp_path / "figures" / figure.name) as image:
        assert image.width > 500 and image.height > 200
