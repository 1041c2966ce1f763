"""Speed benchmarks of EDropout, side by side in one process on this machine.

    python -m benchmark.tools.speed            # whole training: dense vs EDropout variants (ResNet-18, digits)
    python -m benchmark.tools.speed --quick    # fewer epochs, for a quick look

Timings on a shared CPU are noisy: compare the ratios within one run, not absolute seconds.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from benchmark.cell.runner import run_cell
from benchmark.core.config import RunConfig
from benchmark.core.tracking import TrackingSettings


def population_eval_speed(
    arch: str = "resnet18", input_size: int = 16, energy_batch: int = 16, population: int = 8, repeats: int = 5
) -> dict[str, float]:
    """Seconds to score parents + trials (2 x population states) batched vs one state at a time."""
    import timm

    from edropout import EDropout, EDropoutConfig

    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=10, in_chans=1)
    x, y = torch.randn(energy_batch, 1, input_size, input_size), torch.randint(0, 10, (energy_batch,))
    ctrl = EDropout(model, x[:1], epochs=2, config=EDropoutConfig(population=population))
    states = torch.cat([ctrl.population, ctrl.population])

    def batched():
        ctrl.energies(states, x, y)

    def one_by_one():
        for state in states:
            ctrl.energies(state[None], x, y)

    # Interleaved, best of `repeats`: on a shared machine noise only ever adds time, and alternating
    # the two keeps a slow spell from landing on one side only.
    runs = {"batched": [], "sequential": []}
    batched(), one_by_one()  # warm-up
    for _ in range(repeats):
        for name, fn in (("batched", batched), ("sequential", one_by_one)):
            start = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - start)
    timings = {name: min(values) for name, values in runs.items()}
    timings["speedup"] = timings["sequential"] / timings["batched"]
    return timings


VARIANTS = {
    "dense": ("dense", {}),
    "edropout (defaults: batch statistics, whole batch, as the paper)": ("edropout", {}),
    "edropout, energy on 16 samples": ("edropout", {"energy_batch": 16}),
    "edropout, energy on 8 samples": ("edropout", {"energy_batch": 8}),
    "edropout, energy on 8 samples, search stops at 25% of the epochs": (
        "edropout",
        {"energy_batch": 8, "stop_fraction": 0.25},
    ),
}


def training_speed(epochs: int, out_root: str, arch: str = "resnet18", seed: int = 0) -> list[dict]:
    rows = []
    for label, (method, args) in VARIANTS.items():
        cfg = RunConfig(method=method, seed=seed)
        cfg.model.arch, cfg.train.epochs, cfg.method_args = arch, epochs, dict(args)
        start = time.perf_counter()
        metrics = run_cell(cfg, f"{out_root}/{len(rows)}", TrackingSettings(enabled=False), progress=False)
        rows.append(
            {
                "variant": label,
                "train_seconds": metrics["train_seconds"],
                "top1": metrics["top1"],
                "param_pruning_rate": metrics.get("param_pruning_rate", 0.0),
                "search_seconds": metrics.get("search_seconds", 0.0),
                "converged_epoch": metrics.get("converged_epoch"),
                "wall": time.perf_counter() - start,
            }
        )
        print(f"  {label}: {metrics['train_seconds']:.1f}s", file=sys.stderr)
    dense = rows[0]["train_seconds"]
    for row in rows:
        row["ratio_to_dense"] = row["train_seconds"] / dense
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.tools.speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--quick", action="store_true", help="4 epochs")
    parser.add_argument("--out", default="results/speed", help="folder for the cells' metrics.json")
    args = parser.parse_args(argv)
    epochs = 4 if args.quick else args.epochs
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)
    pop = population_eval_speed()
    print("\n## Population evaluation (16 states x 16 samples, ResNet-18, 16 px, best of 5 interleaved)\n")
    print(
        f"batched {pop['batched'] * 1000:.1f} ms, one by one {pop['sequential'] * 1000:.1f} ms: "
        f"**{pop['speedup']:.2f}x** faster batched"
    )
    rows = training_speed(epochs, args.out)
    print(f"\n## Whole training, ResNet-18 on digits, {epochs} epochs, same machine, one run\n")
    print("| variant | train (s) | x dense | search (s) | converged epoch | top-1 % | param pruning rate |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['variant']} | {r['train_seconds']:.1f} | {r['ratio_to_dense']:.2f} | {r['search_seconds']:.1f} "
            f"| {r['converged_epoch'] or '-'} | {r['top1']:.2f} | {r['param_pruning_rate']:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
