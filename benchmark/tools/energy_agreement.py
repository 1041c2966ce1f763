"""Does EDropout's energy rank pruning states the way the states really perform?

    python -m benchmark.tools.energy_agreement                      # both BatchNorm modes, resnet10t on digits
    python -m benchmark.tools.energy_agreement --arch test_resnet --epochs 2 --probes-per-epoch 2

EDropout keeps the population's states ranked by an energy measured on a few samples of each
mini-batch. This tool trains with the search running for every epoch (`stop_fraction=1`) and, at a
few generations per epoch, scores the same parents and trials *correctly*: each state gets its own
BatchNorm statistics re-estimated on training batches under its mask (what a deployed pruned
network has), then its energy is measured in eval mode on a held-out probe of validation samples
(>= 512; on digits the validation share is raised to 40% for this). Two numbers per epoch:

- Spearman: rank correlation of the search's energies of the population (after selection) with the
  probe energies of the same states (1: the same order; 0: unrelated).
- decisions: the share of parent-vs-trial decisions (keep the parent or take the trial) the
  probe agrees with; 50% is a coin flip. Pairs whose trial equals its parent are left out.

Both `energy_norm` modes run with the same seed, data order and initial population, one after the
other in this process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

from benchmark.cell import data as data_mod
from benchmark.cell import models
from benchmark.cell.training import make_loader, make_optimizer, seed_everything
from benchmark.core.config import RunConfig
from edropout import EDropout, EDropoutConfig
from edropout.batchnorm import recalibrate_batchnorm
from edropout.energy import ENERGY_FUNCTIONS


@dataclass
class EpochAgreement:
    epoch: int
    spearman: list[float] = field(default_factory=list)  # one per probed generation (nan-free)
    agree: int = 0
    decisions: int = 0

    @property
    def mean_spearman(self) -> float:
        return statistics.fmean(self.spearman) if self.spearman else float("nan")

    @property
    def decision_agreement(self) -> float:
        return self.agree / self.decisions if self.decisions else float("nan")


class _Probe:
    """Scores states correctly: per-state BatchNorm recalibration on training batches, eval on a probe."""

    def __init__(self, ctrl: EDropout, recal: list[torch.Tensor], probe: tuple[torch.Tensor, torch.Tensor]):
        self.ctrl, self.recal, self.probe = ctrl, recal, probe
        self.norms = [m for m in ctrl.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    @torch.no_grad()
    def energies(self, states: torch.Tensor) -> torch.Tensor:
        ctrl, model = self.ctrl, self.ctrl.model
        saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in self.norms]
        was_training = model.training
        out = []
        try:
            for state in states:
                ctrl.masker.set_states(state)
                if self.norms:
                    recalibrate_batchnorm(model, self.recal)
                model.eval()
                x, y = self.probe
                logits = model(x)
                out.append(ENERGY_FUNCTIONS[ctrl.config.energy](logits[None].float(), y, ctrl.config.kappa))
        finally:
            for m, (mean, var, count) in zip(self.norms, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
            model.train(was_training)
            ctrl._applied = False  # the next training step re-applies the best state
        return torch.cat(out)


def measure(
    arch: str,
    energy_norm: str,
    epochs: int,
    probes_per_epoch: int,
    probe_size: int,
    seed: int = 0,
    energy_batch: int | None = None,
    val_fraction: float = 0.4,
) -> list[EpochAgreement]:
    """Train EDropout with the search on for `epochs` and measure its energy's agreement with the probe."""
    cfg = RunConfig(method="edropout", seed=seed)
    cfg.model.arch, cfg.train.epochs = arch, epochs
    cfg.data.val_fraction = val_fraction  # digits' default 10% holds 144 samples; the probe needs more
    seed_everything(seed)
    bundle = data_mod.build_dataset(cfg.data, seed)
    cfg.model.small_input = models.probe(cfg.model, bundle.in_chans, bundle.input_size)
    model = models.create_model(cfg.model, bundle.num_classes, bundle.in_chans, bundle.input_size)
    loader = make_loader(bundle.train, cfg.train.batch_size, shuffle=True, seed=seed)
    recal = [x for x, _ in make_loader(bundle.train, 64, shuffle=True, seed=seed + 1)][: max(1, 512 // 64)]
    val = make_loader(bundle.val, len(bundle.val), shuffle=False, seed=seed)
    px, py = next(iter(val))
    if len(py) < probe_size:
        raise SystemExit(
            f"error: the validation split has {len(py)} samples, fewer than --probe-size {probe_size}; "
            f"raise --val-fraction (now {val_fraction})"
        )
    probe_xy = (px[:probe_size], py[:probe_size])
    config = EDropoutConfig(energy_norm=energy_norm, stop_fraction=1.0, patience=None, energy_batch=energy_batch)
    ctrl = EDropout(model, px[:1], epochs, config, seed=seed, steps_per_epoch=len(loader))
    probe = _Probe(ctrl, recal, probe_xy)
    optimizer = make_optimizer(model, cfg.train)
    every = max(1, len(loader) // probes_per_epoch)
    rows = []
    original = ctrl.energies
    for epoch in range(1, epochs + 1):
        row = EpochAgreement(epoch)
        model.train()
        for step, (x, y) in enumerate(loader, start=1):
            seen = {}

            def capture(states, xb, yb, seen=seen):
                energies = original(states, xb, yb)
                seen["states"], seen["energies"] = states.clone(), energies.clone()
                return energies

            ctrl.energies = capture if step % every == 0 else original
            ctrl.before_step(x, y)
            if seen:
                _score(ctrl, probe, seen, row)
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            ctrl.after_step(optimizer)
        ctrl.energies = original
        ctrl.end_epoch()
        rows.append(row)
        print(
            f"  {energy_norm}: epoch {epoch}: Spearman {row.mean_spearman:.2f}, "
            f"decisions {row.decision_agreement:.0%} of {row.decisions}",
            file=sys.stderr,
        )
    return rows


def _score(ctrl: EDropout, probe: _Probe, seen: dict, row: EpochAgreement) -> None:
    n = ctrl.config.population
    states, energies = seen["states"], seen["energies"]
    parents, trials = states[:n], states[n:]
    truth = probe.energies(states)
    for i in range(n):
        if torch.equal(parents[i], trials[i]):
            continue
        row.decisions += 1
        row.agree += bool(energies[n + i] <= energies[i]) == bool(truth[n + i] <= truth[i])
    # the population after selection: the state each pair kept, with the energy the search gave it
    keep = energies[n:] <= energies[:n]
    kept_search = torch.where(keep, energies[n:], energies[:n])
    kept_truth = torch.where(keep, truth[n:], truth[:n])
    if kept_search.unique().numel() > 1 and kept_truth.unique().numel() > 1:
        row.spearman.append(float(spearmanr(kept_search.numpy(), kept_truth.numpy()).statistic))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.tools.energy_agreement",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--arch", default="resnet10t")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--probes-per-epoch", type=int, default=4, help="generations scored by the probe per epoch")
    parser.add_argument("--probe-size", type=int, default=512, help="held-out validation samples in the probe")
    parser.add_argument("--energy-batch", type=int, default=0, help="samples per energy measurement (0: whole batch)")
    parser.add_argument("--val-fraction", type=float, default=0.4, help="validation share of the data (the probe)")
    parser.add_argument("--norms", default="batch,running", help="energy_norm modes to compare")
    args = parser.parse_args(argv)
    if args.epochs <= 0 or args.probes_per_epoch <= 0 or args.probe_size < 2:
        parser.error("--epochs and --probes-per-epoch must be > 0 and --probe-size >= 2")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", file=sys.stderr)
    results = {}
    for norm in args.norms.split(","):
        if norm not in ("batch", "running"):
            parser.error(f"unknown energy_norm {norm!r}; valid choices: batch, running")
        results[norm] = measure(
            args.arch,
            norm,
            args.epochs,
            args.probes_per_epoch,
            args.probe_size,
            args.seed,
            args.energy_batch or None,
            args.val_fraction,
        )
    print(
        f"\n## Energy agreement with a {args.probe_size}-sample probe ({args.arch}, digits, seed {args.seed}, "
        f"energy on {args.energy_batch or 'the whole batch of'} samples)\n"
    )
    print("| energy_norm | epoch | Spearman (mean) | parent/trial agreement | decisions |")
    print("|---|---|---|---|---|")
    for norm, rows in results.items():
        for r in rows:
            print(f"| {norm} | {r.epoch} | {r.mean_spearman:.2f} | {r.decision_agreement:.0%} | {r.decisions} |")
        spearman = [s for r in rows for s in r.spearman]
        agree, decisions = sum(r.agree for r in rows), sum(r.decisions for r in rows)
        print(
            f"| {norm} | all | {statistics.fmean(spearman) if spearman else float('nan'):.2f} | "
            f"{agree / max(1, decisions):.0%} | {decisions} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
