"""The latency stage: saved networks timed alone and interleaved, records reused, results.csv takes them."""

from __future__ import annotations

import json
import math
import time

import pytest
import yaml

from benchmark.cell.checkpoint import load_network
from benchmark.core import metrics as M
from benchmark.core.paths import METRICS_FILE, MODEL_FILE
from benchmark.core.tracking import TrackingSettings
from benchmark.study.aggregate import study_rows
from benchmark.study.latency import (
    SOURCE_CELL,
    SOURCE_STAGE,
    Protocol,
    Shape,
    latency_jobs,
    latency_path,
    measure_networks,
    median_error,
    repeat_pair,
    robust_cv,
    run_latency_stage,
)
from benchmark.study.profiles import ExecutorSettings, get_profile
from benchmark.study.scheduler import run_study
from tests.conftest import ROOT

FAST = Protocol(max_seconds=1.0, block_ms=2.0)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished two-cell study (dense and l1_filter at 0.5 on test_resnet, 8x8 digits) with saved networks."""
    results = tmp_path_factory.mktemp("results")
    raw = {
        "datasets": ["digits"],
        "archs": ["test_resnet"],
        "seeds": [0],
        "methods": ["dense", "l1_filter"],
        "operating_points": [0.5],
        "epochs": 1,
        "finetune_epochs": 1,
        "set": {"data.input_size": 8, "measure.latency_batch_sizes": [1, 4], "measure.latency_warmup": 1},
    }
    profile = get_profile({"profile": "t", "profiles": {"t": raw}})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BENCHMARK_RESULTS", str(results))
        patch.setenv("BENCHMARK_CHECKPOINTS", str(results / "checkpoints"))
        off, serial = TrackingSettings(enabled=False), ExecutorSettings(backend="serial")
        for stage, cells in (
            ("dense", latency_jobs(profile, results)[:1]),
            ("cells", latency_jobs(profile, results)[1:]),
        ):
            run_study(stage, [c for c, _ in cells], serial, off, save_model=True, lock_folder=results)
        yield profile, results


def _record(results, cell):
    return json.loads(latency_path(results, cell.out).read_text())


def test_the_stage_times_each_network_alone_and_interleaved(study):
    profile, results = study
    counts = run_latency_stage(profile, results, FAST)
    assert sum(counts.values()) == 2 and set(counts) <= {"measured", "untrusted"}
    (dense, _), (pruned, pair) = latency_jobs(profile, results)
    assert pair is dense and (pruned.out / MODEL_FILE).is_file()
    record = _record(results, pruned)
    cell = json.loads((pruned.out / METRICS_FILE).read_text())
    assert record["cell"] == {k: cell[k] for k in ("config_hash", "code_hash", "finished_at")}
    values = record["metrics"]
    for b in (1, 4):
        assert values[M.latency_ms(b)] > 0 and values[M.dense_latency_ms(b)] > 0
        ratio_of_medians = values[M.dense_latency_ms(b)] / values[M.latency_ms(b)]
        assert 0.5 < values[M.latency_speedup(b)] / ratio_of_medians < 2  # the median of the rounds' ratios
        assert values[M.speedup_per_mac_reduction(b)] == pytest.approx(
            values[M.latency_speedup(b)] / cell[M.MAC_REDUCTION]
        )
        assert min(values[M.latency_cv(b)], values[M.dense_latency_cv(b)], values[M.latency_speedup_cv(b)]) >= 0
        assert values[M.latency_rounds(b)] >= 1
    assert values[M.LATENCY_THREADS] == 1 and isinstance(values[M.LATENCY_TRUSTED], bool)
    alone = _record(results, dense)["metrics"]  # the dense cell: timed alone, no pair columns
    assert alone[M.latency_ms(1)] > 0 and M.latency_speedup(1) not in alone


def test_a_rerun_keeps_current_records_and_remeasures_a_rerun_cell(study):
    profile, results = study
    run_latency_stage(profile, results, FAST)
    (_, _), (pruned, _) = latency_jobs(profile, results)
    path = latency_path(results, pruned.out)
    before = path.stat().st_mtime_ns
    start = time.perf_counter()
    assert run_latency_stage(profile, results, FAST) == {"current": 2}
    assert time.perf_counter() - start < 5 and path.stat().st_mtime_ns == before
    metrics_file = pruned.out / METRICS_FILE
    original = metrics_file.read_text()
    try:  # the cell was re-run: a new result, so its timing is redone
        metrics_file.write_text(json.dumps({**json.loads(original), "finished_at": "2099-01-01T00:00:00"}))
        counts = run_latency_stage(profile, results, FAST)
        assert counts.get("current") == 1 and sum(counts.values()) == 2
    finally:
        metrics_file.write_text(original)
        run_latency_stage(profile, results, FAST)


def test_results_rows_take_the_stage_numbers_or_flag_the_cell_timing(study):
    profile, results = study
    run_latency_stage(profile, results, FAST)
    (dense, _), (pruned, _) = latency_jobs(profile, results)
    rows = {row["method"]: row for row in study_rows(profile, results)}
    stage = _record(results, pruned)["metrics"]
    row = rows["l1_filter"]
    assert row[M.LATENCY_SOURCE] == SOURCE_STAGE and rows["dense"][M.LATENCY_SOURCE] == SOURCE_STAGE
    for column in (M.latency_ms(1), M.dense_latency_ms(4), M.latency_speedup(1), M.latency_cv(4), M.LATENCY_TRUSTED):
        assert row[column] == stage[column]
    path = latency_path(results, pruned.out)
    saved = path.read_text()
    path.unlink()
    try:  # no record: the cell's own timing stays, marked as taken beside training and untrusted
        row = {r["method"]: r for r in study_rows(profile, results)}["l1_filter"]
        cell = json.loads((pruned.out / METRICS_FILE).read_text())
        assert row[M.LATENCY_SOURCE] == SOURCE_CELL and row[M.LATENCY_TRUSTED] is False
        assert row[M.latency_ms(1)] == cell[M.latency_ms(1)]
    finally:
        path.write_text(saved)


def test_a_spread_that_never_reaches_the_target_is_flagged_untrusted(study):
    profile, results = study
    (dense, _), (pruned, _) = latency_jobs(profile, results)
    shape = Shape.of(json.loads((pruned.out / METRICS_FILE).read_text()))
    networks = [load_network(c.out / MODEL_FILE) for c in (pruned, dense)]
    start = time.perf_counter()
    values = measure_networks(*networks, shape, Protocol(target_error=0.0, max_seconds=0.2, block_ms=1.0))
    assert time.perf_counter() - start < 3
    assert values[M.LATENCY_TRUSTED] is False and values[M.latency_cv(1)] > 0


def test_repeat_pair_measures_the_same_pair_again(study):
    profile, results = study
    (dense, _), (pruned, _) = latency_jobs(profile, results)
    summary = repeat_pair(dense.out, pruned.out, times=2, protocol=FAST)
    assert len(summary[1]["speedup"]) == 2 and summary[1]["speedup_cv"] >= 0 and 0 <= summary["trusted"] <= 2


def test_robust_cv_ignores_one_disturbed_round():
    calm = [10.0, 10.1, 9.9, 10.05, 9.95]
    assert robust_cv(calm + [40.0]) < 0.02 < robust_cv([10.0, 12.0, 8.0, 11.0, 9.0])
    assert math.isnan(robust_cv([10.0]))
    assert median_error(calm * 4) == pytest.approx(median_error(calm) / 2)  # 4x the rounds: half the error


def test_the_pipeline_times_after_the_cells_and_before_the_table():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    latency = stages["latency"]
    assert {"results/dense", "results/cells"} <= set(latency["deps"])
    assert latency["outs"] == [{"results/latency": {"persist": True, "cache": False}}]
    assert "results/latency" in stages["aggregate"]["deps"]
