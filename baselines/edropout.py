"""edropout: energy-based population search over pruning masks during training.

H. Salehinejad and S. Valaee, "EDropout: Energy-Based Dropout and Pruning of Deep Neural
Networks", IEEE TNNLS 33(10), 2022 (arXiv 2006.04270). The method lives in the `edropout`
library; this file only connects it to the harness. Settings: `--set method_args.<name>=<value>`
with the fields of `edropout.EDropoutConfig` (population, energy, kappa, energy_batch, ...).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter

import torch
from torch import nn

from benchmark.api import TWIN_FROM, CellContext, Hooks, MethodResult, register_method
from benchmark.cell import pruning
from benchmark.cell.measure import count_params
from benchmark.cell.training import make_loader
from benchmark.core import metrics as M
from benchmark.core.errors import UserError
from edropout import EDropout, EDropoutConfig
from edropout.units import Coverage, coverage, find_units, shrink

FULL_BN_BATCHES = 50  # training batches that re-estimate F's BatchNorm statistics


def _config(method_args: dict, method: str = "edropout", search: str | None = None) -> EDropoutConfig:
    if search is not None and "search" in method_args:
        raise UserError(f"bad method_args for {method}: 'search' is fixed to {search!r} by this control")
    values = {k: v for k, v in method_args.items() if k != TWIN_FROM}  # provenance of a control's values
    try:
        config = EDropoutConfig.from_dict(values)
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad method_args for {method}: {exc}") from None
    if search is not None:
        config.search = search
    return config


def control_args(method: str, search: str):
    """`check_args` of a control: EDropout's settings, with `search` fixed."""
    return lambda method_args: _config(method_args, method, search)


def register_control(module: str, name: str, search: str, what: str, run=None, from_twin: tuple[str, ...] = ()):
    """Register a control of EDropout from its plugin file (`module`: that file's `__name__`, so the file
    is the control's source and part of its fingerprint): EDropout's settings with `search` fixed, run by
    `run(ctx, config)` (default: EDropout's own loop)."""
    check = control_args(name, search)

    def control(ctx: CellContext) -> MethodResult:
        return (run or run_edropout)(ctx, check(ctx.cfg.method_args))

    control.__module__, control.__name__ = module, name
    return register_method(
        name,
        citation=f"control of EDropout (Salehinejad & Valaee, TNNLS 2022): {what}",
        granularity="structured",
        schedule="during_training",
        check_args=check,
        control_of="edropout",
        from_twin=from_twin,
    )(control)


class _Search(Hooks):
    """The controller's calls at the harness's hook points."""

    def __init__(self, ctrl: EDropout):
        self.ctrl, self.changed, self.optimizer = ctrl, False, None

    def before_step(self, model, x, y):
        self.ctrl.before_step(x, y)

    def bind_optimizer(self, optimizer):
        self.optimizer = optimizer

    def after_step(self, model):
        self.ctrl.after_step(self.optimizer)  # pruned units: weights, BN statistics and optimiser state held

    def end_epoch(self, model, epoch):
        summary = self.ctrl.epoch_summary()
        self.changed = self.ctrl.end_epoch()
        return summary

    def network_changed(self):
        return self.changed


@register_method(
    "edropout",
    citation="Salehinejad & Valaee, EDropout, IEEE TNNLS 2022",
    granularity="structured",
    schedule="during_training",
    check_args=_config,
)
def edropout(ctx: CellContext) -> MethodResult:
    return run_edropout(ctx, _config(ctx.cfg.method_args))


def run_edropout(ctx: CellContext, config: EDropoutConfig) -> MethodResult:
    """One EDropout cell with `config` (the method, or one of its controls)."""
    params_before = count_params(ctx.model)[M.PARAMS]
    steps = math.ceil(len(ctx.bundle.train) / ctx.cfg.train.batch_size)
    try:
        with warnings.catch_warnings():  # a patience that cannot fire is recorded below, not printed per cell
            warnings.filterwarnings("ignore", message="EDropout patience")
            ctrl = EDropout(
                ctx.model, ctx.example_inputs(), ctx.cfg.train.epochs, config, seed=ctx.cfg.seed, steps_per_epoch=steps
            )
    except ValueError as exc:  # e.g. an architecture without prunable units
        raise UserError(f"edropout cannot prune {ctx.cfg.model.arch!r}: {exc}") from None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="EDropout patience")
        ctx.train(ctx.model, hooks=[_Search(ctrl)])
    # F: every unit on, BatchNorm statistics re-estimated on training batches (the masked network's
    # statistics do not describe it); the paper's F was measured without that step.
    batches = make_loader(ctx.bundle.train, ctx.cfg.train.batch_size, shuffle=True, seed=ctx.cfg.seed)
    full = ctrl.full_network(recalibrate=batches, max_batches=FULL_BN_BATCHES)
    pruned = ctrl.finalize()
    full_metrics = ctx.evaluate(full, "test")
    history = ctrl.history
    notes = []
    if config.search == "energy" and history and not any(g.best_changed for g in history):
        notes.append(
            f"the search never left its initial state (best state unchanged for all {len(history)} "
            "generations): this is a random mask"
        )
    ctx.tracker.log_series(
        {
            "search_best_energy": [(g.step, g.best_energy) for g in history],
            "search_mean_energy": [(g.step, g.mean_energy) for g in history],
            "search_diversity": [(g.step, g.diversity) for g in history],
            "search_kept_fraction": [(g.step, g.kept_fraction) for g in history],
        }
    )
    return MethodResult(
        pruned,
        {
            # what the best state removes, whether or not the network was shrunk (layout=filter, shrink=false)
            M.PARAM_PRUNING_RATE: ctrl.removed_parameters() / params_before,
            M.CHANNEL_PRUNING_RATE: 1.0 - float(ctrl.best.float().mean()),
            "units": ctrl.units.num_units,
            "unit_groups": len(ctrl.units.groups),
            M.TOP1_FULL: full_metrics["top1"],
            M.TOP5_FULL: full_metrics["top5"],
            M.SEARCH_SECONDS: ctrl.search_seconds,
            "generations": len(history),
            M.CONVERGED_EPOCH: ctrl.converged_epoch,
            M.CONVERGED_STEP: ctrl.converged_step,
            M.SEARCHED_EPOCHS: ctrl.searched_epochs,
            "search_stop_reason": ctrl.stop_reason,
            "search": config.search,
            **coverage_metrics(ctrl.coverage, notes),  # computed by the controller before training
            M.STATUS_NOTES: notes,
            # the final state's kept units per unit group (what the `scratch` and `shuffled` controls need)
            "kept_per_group": [int(part.sum()) for part in ctrl.units.split(ctrl.best)],
            M.PATIENCE_GENERATIONS: ctrl.patience_generations,
            M.SEARCH_WINDOW_GENERATIONS: ctrl.search_window_generations,
            # the search dynamics, one point per generation (the report plots them)
            "search_curve": {
                "step": [g.step for g in history],
                "best_energy": [g.best_energy for g in history],
                "mean_energy": [g.mean_energy for g in history],
                "kept_fraction": [g.kept_fraction for g in history],
                "diversity": [g.diversity for g in history],
            },
        },
    )


def coverage_metrics(coverage: Coverage, notes: list[str]) -> dict:
    """What EDropout could prune in this network (the record, and its summary as columns); adds a
    status note when unit groups had to be skipped."""
    reasons = Counter(coverage.skipped.values())
    summary = "; ".join(f"{reason}: {count}" for reason, count in reasons.most_common())
    if coverage.skipped:
        total = coverage.prunable_groups + len(coverage.skipped)
        notes.append(
            f"{len(coverage.skipped)} of {total} unit groups cannot be pruned ({summary}); at most "
            f"{coverage.max_parameter_rate:.0%} of the parameters can be removed"
        )
    return {
        "coverage": coverage.as_dict(),
        M.COVERAGE_PRUNABLE_GROUPS: coverage.prunable_groups,
        M.COVERAGE_SKIPPED_GROUPS: len(coverage.skipped),
        M.COVERAGE_MAX_RATE: coverage.max_parameter_rate,
        M.COVERAGE_SKIPPED: summary,
    }


def reinitialise(model: nn.Module, seed: int) -> None:
    """Fresh weights for a (shrunk) network: every layer's default initialisation from its new shape
    (`benchmark.cell.pruning.reinitialise`), then the model's own `init_weights` where timm defines one
    (e.g. ResNet's), so the scratch network starts like the network EDropout started from."""
    pruning.reinitialise(model, seed)
    init = getattr(model, "init_weights", None)
    if callable(init):
        init()


def run_scratch(ctx: CellContext, config: EDropoutConfig) -> MethodResult:
    """The `scratch` control: EDropout's final per-group widths, built, re-initialised and trained."""
    if config.kept_per_group is None:
        raise UserError("edropout_scratch needs method_args.kept_per_group (EDropout's final per-group counts)")
    if config.layout != "group" or not config.shrink:
        raise UserError(
            f"edropout_scratch builds the smaller network physically: it needs layout 'group' with shrink "
            f"true, got layout {config.layout!r}, shrink {config.shrink}"
        )
    params_before = count_params(ctx.model)[M.PARAMS]
    example = ctx.example_inputs()
    units = find_units(ctx.model, example, config.layout)
    sizes = [group.size for group in units.groups]
    if len(config.kept_per_group) != len(sizes) or any(k > n for k, n in zip(config.kept_per_group, sizes)):
        raise UserError(
            f"edropout_scratch: kept_per_group ({len(config.kept_per_group)} counts) does not fit "
            f"{ctx.cfg.model.arch}'s {len(sizes)} unit groups"
        )
    notes: list[str] = []
    covered = coverage_metrics(coverage(ctx.model, units), notes)
    keep = torch.cat([torch.arange(n) < k for k, n in zip(config.kept_per_group, sizes)])
    model = shrink(ctx.model, example, units, keep)
    reinitialise(model, ctx.cfg.seed)
    ctx.train(model)
    return MethodResult(
        model,
        {
            M.PARAM_PRUNING_RATE: 1.0 - count_params(model)[M.PARAMS] / params_before,
            M.CHANNEL_PRUNING_RATE: 1.0 - sum(config.kept_per_group) / sum(sizes),
            "units": sum(sizes),
            "unit_groups": len(sizes),
            "search": "scratch",
            "kept_per_group": list(config.kept_per_group),
            **covered,
            M.STATUS_NOTES: notes,
        },
    )
