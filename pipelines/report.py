"""Stage `report`: the results table of the active profile, reports/results.md."""

from __future__ import annotations

from benchmark.report import collect, write_results_md
from benchmark.study import PROJECT_ROOT, dense_cells, get_profile, load_params
from pipelines._main import stage_main


def main(argv: list[str]) -> None:
    profile = get_profile(load_params())
    paths = [out / "metrics.json" for _, out in dense_cells(profile, PROJECT_ROOT / "results")]
    rows, missing = collect(paths)
    out = PROJECT_ROOT / "reports" / "results.md"
    write_results_md(rows, missing, out, f"Results: profile '{profile.name}'")
    print(f"wrote {out.relative_to(PROJECT_ROOT)} ({len(rows)} cells, {len(missing)} missing)")


if __name__ == "__main__":
    stage_main(main)
