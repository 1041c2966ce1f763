"""Stage `report`: reports/results.csv -> reports/report.md, report.html, figures/, metrics.json, plots/."""

from __future__ import annotations

from benchmark.core.paths import PROJECT_ROOT
from benchmark.report.build import build_report
from benchmark.study.profiles import get_profile, load_params
from pipelines._main import stage_main


def main(argv: list[str]) -> None:
    profile = get_profile(load_params())
    reports = PROJECT_ROOT / "reports"
    title = f"EDropout reproduction report: profile '{profile.name}'"
    summary = build_report(reports / "results.csv", reports, title, root=PROJECT_ROOT)
    claims = ", ".join(f"{n} {verdict}" for verdict, n in summary.claims.items())
    print(
        f"wrote reports/report.md and report.html ({summary.finished} finished, {summary.failed} failed, "
        f"{summary.missing} missing cells; claims: {claims}; checklist {summary.checklist_met}/"
        f"{summary.checklist_items} met; {len(summary.figures)} figures)"
    )


if __name__ == "__main__":
    stage_main(main)
