"""Thin entry points that `dvc.yaml` stages call; the logic lives in `benchmark/`."""
