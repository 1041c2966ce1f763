"""Does EDropout run on every timm family, or refuse it before training with one line?

    python -m benchmark.tools.families                              # the eight default families, 1 epoch
    python -m benchmark.tools.families --archs resnet18,test_vit --epochs 2 --input-size 32

For each arch: a 1-epoch EDropout run of the library itself (no harness) on scikit-learn's digits
resized to `--input-size` (a subset of the training split, `--train-images`; the model built as the
harness builds it, but with timm's own stem unless `--cifar-stem`: the harness's CIFAR stem makes a
ResNet 16x the compute at 32 px, too slow for this check on a 2-core CPU; `img_size` passed where
the arch has a fixed input size, e.g. ViTs). One Markdown row per arch: status (ok / refused: why / error: one
line), parameters before -> after the physical shrink, prunable / skipped unit groups, the largest
parameter pruning rate the units can reach (`edropout.Coverage`), top-1 of the pruned network and of
F (every unit on, BatchNorm re-estimated on training batches) on the validation split, a chance flag
(pruned top-1 <= 1.5 x chance) and wall seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Subset
from tqdm import tqdm

from benchmark.cell import data as data_mod
from benchmark.cell import models
from benchmark.cell.training import make_loader, make_optimizer, seed_everything
from benchmark.core.config import DataConfig, ModelConfig, TrainConfig
from edropout import EDropout, EDropoutConfig

DEFAULT_ARCHS = (
    "resnet18",
    "resnet50",
    "mobilenetv3_small_050",
    "efficientnet_b0",
    "regnety_002",
    "convnext_atto",
    "densenet121",
    "test_vit",
)
CHANCE_FACTOR = 1.5  # top-1 at or below 1.5 x chance is flagged


@dataclass
class Row:
    arch: str
    status: str = "ok"
    params_before: int | None = None
    params_after: int | None = None
    groups: int | None = None
    skipped: int | None = None
    max_rate: float | None = None
    top1: float | None = None
    top1_full: float | None = None
    at_chance: bool | None = None
    seconds: float = 0.0

    def markdown(self) -> str:
        num = lambda v, fmt: "-" if v is None else fmt.format(v)
        params = "-" if self.params_before is None else f"{self.params_before:,} -> {num(self.params_after, '{:,}')}"
        groups = "-" if self.groups is None else f"{self.groups} / {self.skipped}"
        chance = "-" if self.at_chance is None else ("AT CHANCE" if self.at_chance else "no")
        cells = [self.arch, self.status, params, groups, num(self.max_rate, "{:.4f}"), num(self.top1, "{:.1%}")]
        return "| " + " | ".join(cells + [num(self.top1_full, "{:.1%}"), chance, f"{self.seconds:.0f}"]) + " |"


def header(args: argparse.Namespace) -> str:
    return (
        f"Digits at {args.input_size} px, {args.train_images} training images, batch {args.batch_size}, "
        f"{args.epochs} epoch(s), population {args.population}, energy batch {args.energy_batch}, seed {args.seed}, "
        f"{'CIFAR stem for ResNets' if args.cifar_stem else 'timm stems'}; top-1 on the validation split.\n\n"
        "| arch | status | parameters before -> after shrink | prunable / skipped groups | max reachable "
        "parameter rate | top-1 (pruned) | top-1 F (BN recal.) | chance | wall s |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )


def build_model(arch: str, in_chans: int, num_classes: int, size: int, cifar_stem: bool = False) -> nn.Module:
    """The model as the harness builds it; with timm's `img_size` where the arch needs a fixed size."""
    cfg = ModelConfig(arch=arch, small_input=None if cifar_stem else False)
    try:
        cfg.small_input = models.probe(cfg, in_chans, size)
        return models.create_model(cfg, num_classes, in_chans, size)
    except Exception:  # noqa: BLE001 - e.g. a ViT built for 224 px: try its img_size argument below
        pass
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes, in_chans=in_chans, img_size=size)
    model.eval()(torch.zeros(1, in_chans, size, size))
    return model


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def top1(model: nn.Module, loader) -> float:
    model.eval()
    right = total = 0
    for x, y in loader:
        right += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return right / max(total, 1)


def train(ctrl: EDropout, model: nn.Module, loader, epochs: int, progress: tqdm) -> nn.Module:
    optimizer = make_optimizer(model, TrainConfig())
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            ctrl.before_step(x, y)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            ctrl.after_step(optimizer)
            progress.update(1)
        if ctrl.end_epoch():
            optimizer = make_optimizer(model, TrainConfig())
    return ctrl.finalize()


def run_arch(arch: str, args: argparse.Namespace, bundle, progress: tqdm) -> Row:
    row, start = Row(arch), time.perf_counter()
    try:
        seed_everything(args.seed)
        model = build_model(arch, bundle.in_chans, bundle.num_classes, bundle.input_size, args.cifar_stem)
        row.params_before = count(model)
        train_set = Subset(bundle.train, range(min(args.train_images, len(bundle.train))))
        loader = make_loader(train_set, args.batch_size, shuffle=True, seed=args.seed)
        config = EDropoutConfig(population=args.population, energy_batch=args.energy_batch or None)
        example = torch.zeros(1, bundle.in_chans, bundle.input_size, bundle.input_size)
        try:
            ctrl = EDropout(model, example, args.epochs, config, seed=args.seed, steps_per_epoch=len(loader))
        except ValueError as exc:  # refused before training
            row.status = f"refused: {exc}"
            return row
        coverage = ctrl.coverage  # computed before training: what the run can and cannot prune
        row.groups, row.skipped = coverage.prunable_groups, len(coverage.skipped)
        row.max_rate = coverage.max_parameter_rate
        pruned = train(ctrl, model, loader, args.epochs, progress)
        row.params_after = count(pruned)
        val = make_loader(bundle.val, 256, shuffle=False, seed=args.seed)
        row.top1 = top1(pruned, val)
        row.at_chance = row.top1 <= CHANCE_FACTOR / bundle.num_classes
        row.top1_full = top1(ctrl.full_network(recalibrate=loader, max_batches=4), val)
        if row.params_after >= row.params_before:
            row.status = "error: the network was not shrunk"
    except Exception as exc:  # noqa: BLE001 - one line per arch, never a traceback
        row.status = f"error: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
    finally:
        row.seconds = time.perf_counter() - start
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archs", default=",".join(DEFAULT_ARCHS), help="comma-separated timm names")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--train-images", type=int, default=512, help="training images used (a subset of digits)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--energy-batch", type=int, default=16, help="samples per energy measurement (0: whole batch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cifar-stem", action="store_true", help="the harness's CIFAR stem for ResNets (slow)")
    args = parser.parse_args(argv)
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    bundle = data_mod.build_dataset(DataConfig(name="digits", input_size=args.input_size), args.seed)
    steps = -(-min(args.train_images, len(bundle.train)) // args.batch_size) * args.epochs
    print(header(args), flush=True)
    rows = []
    with warnings.catch_warnings(), tqdm(total=steps * len(archs), unit="step", file=sys.stderr) as progress:
        warnings.filterwarnings("ignore")  # timm/torch-pruning chatter; the status column says what matters
        for arch in archs:
            progress.set_description(arch)
            done = progress.n
            rows.append(run_arch(arch, args, bundle, progress))
            progress.update(done + steps - progress.n)  # a refused or failed arch skips its steps
            tqdm.write(rows[-1].markdown(), file=sys.stdout)
    return 0 if all(not r.status.startswith("error") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
