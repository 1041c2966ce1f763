"""Status notes and coverage: what a reader must know before trusting a cell, recorded and reported."""

import math

import pandas as pd

from benchmark.cell.runner import TrackingSettings, run_cell, status_notes
from benchmark.report.coverage import coverage_blocks, status_note_blocks


def test_a_top1_at_chance_is_noted_and_the_methods_notes_follow():
    assert status_notes(97.0, 10, []) == ""
    assert status_notes(14.9, 10, []).startswith("top-1 14.9% is at chance (1/10 = 10.0%")
    assert "at chance" in status_notes(math.nan, 10, [])
    assert status_notes(50.0, 10, ["the search never left its initial state"]) == (
        "the search never left its initial state"
    )
    assert status_notes(20.0, 100, []) == ""  # 100 classes: chance is 1%


def test_an_edropout_cell_records_its_coverage_and_notes(tmp_path, tiny_cfg):
    cfg = tiny_cfg
    cfg.method, cfg.model.arch = "edropout", "test_resnet"
    got = run_cell(cfg, tmp_path / "e", TrackingSettings(enabled=False), progress=False)
    assert got["coverage_prunable_groups"] == got["unit_groups"] > 0
    assert 0 < got["coverage_max_parameter_rate"] < 1
    assert got["coverage_skipped_groups"] == len(got["coverage"]["skipped"])
    assert isinstance(got["status_notes"], str)


def test_the_report_shows_coverage_per_arch_and_every_noted_cell():
    rows = [
        {
            "cell": f"edropout/digits/{arch}/seed{seed}",
            "dataset": "digits",
            "arch": arch,
            "seed": seed,
            "method": "edropout",
            "status": "finished",
            "coverage_prunable_groups": prunable,
            "coverage_skipped_groups": skipped,
            "coverage_max_parameter_rate": rate,
            "coverage_skipped": why,
            "status_notes": note,
        }
        for arch, prunable, skipped, rate, why in (
            ("regnety_002", 18, 26, 0.62, "grouped convolution: 20; squeeze-excitation: 6"),
            ("resnet10t", 9, 0, 0.99, ""),
        )
        for seed, note in ((0, ""), (1, "top-1 10.0% is at chance" if arch == "regnety_002" else ""))
    ]
    cells = pd.DataFrame(rows)
    table = coverage_blocks(cells)[-1]
    assert table.rows == [
        ["digits", "regnety_002", "18", "26", "62.0%", "grouped convolution: 20; squeeze-excitation: 6"],
        ["digits", "resnet10t", "9", "0", "99.0%", "none"],
    ]
    notes = status_note_blocks(cells)
    assert notes[-1].rows == [["edropout/digits/regnety_002/seed1", "top-1 10.0% is at chance"]]
    assert "1 of 4 finished cells" in notes[0].text
    assert "No finished cell carries a status note" in status_note_blocks(cells.assign(status_notes=""))[0].text


def test_the_report_says_where_each_speedup_came_from_and_which_are_untrusted():
    from benchmark.report.coverage import latency_blocks

    cells = pd.DataFrame(
        [
            {"cell": "a", "status": "finished", "latency_source": "latency stage", "latency_trusted": True},
            {"cell": "b", "status": "finished", "latency_source": "in cell, beside training", "latency_trusted": False},
        ]
    )
    blocks = latency_blocks(cells)
    assert "1 from latency stage, 1 from in cell, beside training; 1 flagged untrusted" in blocks[0].text
    assert blocks[1].rows == [["b", "in cell, beside training"]]
    assert "not to be trusted" in latency_blocks(cells.drop(columns=["latency_source"]))[0].text
