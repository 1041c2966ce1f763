"""Stage `aggregate`: one row per cell of the active profile (finished, failed or missing) in reports/results.csv."""

from __future__ import annotations

from benchmark.core.paths import PROJECT_ROOT, results_root
from benchmark.study.aggregate import write_results_csv
from benchmark.study.profiles import get_profile, load_params
from pipelines._main import stage_main


def main(argv: list[str]) -> None:
    profile = get_profile(load_params())
    out = PROJECT_ROOT / "reports" / "results.csv"
    counts = write_results_csv(profile, results_root(), out)
    print(f"wrote {out.relative_to(PROJECT_ROOT)}: " + ", ".join(f"{n} {status}" for status, n in counts.items()))


if __name__ == "__main__":
    stage_main(main)
