"""Stage `data`: put the active profile's datasets under data/raw before `prepare` reads them.

torchvision datasets are downloaded with torchvision's own URLs and MD5 checksums (in parallel,
complete files only); local datasets (imagefolder) are checked, never downloaded; builtin ones
(digits) need nothing. data/raw is a DVC-cached output, so `dvc push` shares it through a remote
and `dvc pull data` gets it on a machine without internet. A dataset that is missing and cannot be
downloaded is one `error:` line naming it, its files and where to put them; exit code 2.

    python -m pipelines.data            # the active profile (params.yaml)
    python -m pipelines.data paper      # another profile
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from benchmark.cell.data import get_spec
from benchmark.core.config import DataConfig
from benchmark.core.errors import UserError
from benchmark.core.io import write_json_atomic
from benchmark.study.plan import confirm_cost
from benchmark.study.profiles import get_profile, load_params
from benchmark.study.pull import pull
from pipelines._main import stage_main

MANIFEST = "datasets.json"  # what the stage found or fetched (also keeps data/raw a non-empty DVC output)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise UserError("usage: python -m pipelines.data [PROFILE]")
    profile = get_profile(load_params(), argv[0] if argv else None)
    start = time.perf_counter()
    sources, statuses = {}, {}
    for dataset in profile.datasets:
        spec = get_spec(dataset)
        root = Path(profile.config("dense", dataset, profile.archs[0], profile.seeds[0]).data.root)
        if spec.fetch.kind == "builtin":
            statuses[dataset] = "builtin"
        else:
            sources[dataset] = (spec.fetch, root)
    done, errors = pull(sources)
    statuses.update(done)
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    if errors:
        print(
            f"error: {len(errors)} of {len(profile.datasets)} datasets of profile {profile.name!r} missing "
            f"({time.perf_counter() - start:.1f}s); nothing half-written",
            file=sys.stderr,
        )
        sys.exit(2)
    estimate = confirm_cost(profile)  # the study starts here: a big one asks first (BENCHMARK_YES=1 goes on)
    if estimate is not None:
        print(f"plan: profile {profile.name!r} estimated at {estimate.hours * 60:.0f} min on {estimate.device}")
    raw = Path(DataConfig().root)
    raw.mkdir(parents=True, exist_ok=True)
    manifest = {"profile": profile.name, "datasets": dict(sorted(statuses.items()))}
    old = raw / MANIFEST
    if not old.is_file() or json.loads(old.read_text() or "{}") != manifest:
        write_json_atomic(old, manifest)
    for dataset, status in sorted(statuses.items()):
        print(f"data: {dataset} {status}")


if __name__ == "__main__":
    stage_main(main)
