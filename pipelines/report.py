"""Stage `report`: reports/results.csv -> reports/report.md, report.html, figures/, metrics.json, plots/."""

from __future__ import annotations

from benchmark.core.paths import PROJECT_ROOT
from benchmark.core.study_runs import record_study_outputs
from benchmark.core.tracking import TrackingSettings
from benchmark.report.build import build_report, provenance
from benchmark.study.profiles import get_profile, load_params
from pipelines._main import stage_main


def main(argv: list[str]) -> None:
    params = load_params()
    profile = get_profile(params)
    reports = PROJECT_ROOT / "reports"
    title = f"EDropout reproduction report: profile '{profile.name}'"
    built_from = provenance(profile.name)
    summary = build_report(reports / "results.csv", reports, title, root=PROJECT_ROOT, built_from=built_from)
    claims = ", ".join(f"{n} {verdict}" for verdict, n in summary.claims.items())
    line = (
        f"{summary.finished} finished, {summary.failed} failed, {summary.missing} missing cells; claims: {claims}; "
        f"checklist {summary.checklist_met}/{summary.checklist_items} met; {len(summary.figures)} figures"
    )
    print(f"wrote reports/report.md and report.html ({line})")
    # the study's MLflow run gets the profile, the report and results.csv (when this checkout's store has it)
    outputs = [reports / name for name in ("report.html", "report.md", "results.csv", "metrics.json")]
    described = f"Report built from commit {built_from['commit']} ({built_from['built']}): {line}."
    profile_params = params["profiles"][profile.name]
    run_id = record_study_outputs(TrackingSettings(), profile.name, profile_params, outputs, described)
    if run_id:
        print(f"attached the report and the profile to the study's MLflow run {run_id}")


if __name__ == "__main__":
    stage_main(main)
