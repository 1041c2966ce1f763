"""The metric table: every reported quantity once, with its label, unit, format and direction.

A metric is a `str` (its column name in metrics.json and results.csv) that also carries how to show
it, so `measure`, `stats`, the report tables, claims and figures use one name and one label:

    from benchmark.core import metrics as M
    frame[M.TOP1]; M.TOP1.label -> "top-1 %"; M.TOP1.show(97.5) -> "97.50%"

`where` says which code measures it: `measure` (cell.measure), `runner` (cell.runner, test set and
the side-by-side dense comparison), `method` (a method's own metrics), `derived` (report.stats,
from results.csv). `bounds` is the range a value (and so a confidence interval of its mean) can take.
To add a metric: add a row here, produce the value where `where` says, and list it in `SUMMARY` if
the report's tables should summarise it over seeds.
"""

from __future__ import annotations

import functools
import math

PERCENT, FRACTION, SIGNED_PERCENT, POSITIVE = (0.0, 100.0), (0.0, 1.0), (-100.0, 100.0), (0.0, math.inf)


class Metric(str):
    """A metric's name, usable wherever the name is (dict keys, DataFrame columns), plus how to show it."""

    label: str
    unit: str
    fmt: str
    scale: float
    higher_is_better: bool | None
    where: str
    description: str
    bounds: tuple[float, float] | None

    def __new__(
        cls,
        name: str,
        label: str,
        *,
        unit: str = "",
        fmt: str = "{:.2f}",
        scale: float = 1.0,
        higher_is_better: bool | None = None,
        where: str = "measure",
        description: str = "",
        bounds: tuple[float, float] | None = None,
    ) -> Metric:
        self = super().__new__(cls, name)
        self.label, self.unit, self.fmt, self.scale = label, unit, fmt, scale
        self.higher_is_better, self.where, self.description = higher_is_better, where, description
        self.bounds = bounds
        return self

    def __reduce__(self):  # pickles (to worker processes) as the plain name
        return (str, (str(self),))

    def show(self, value: float | None) -> str:
        """`value` formatted with its scale and unit, or `-` when missing."""
        return "-" if value is None else self.fmt.format(value * self.scale) + self.unit


TABLE: dict[str, Metric] = {}


def _add(name: str, label: str, **kwargs) -> Metric:
    metric = Metric(name, label, **kwargs)
    if name in TABLE:
        raise ValueError(f"metric {name!r} is defined twice")
    TABLE[name] = metric
    return metric


# accuracy (runner: test and validation sets)
TOP1 = _add(
    "top1",
    "top-1 %",
    unit="%",
    higher_is_better=True,
    where="runner",
    description="test top-1 accuracy",
    bounds=PERCENT,
)
TOP5 = _add(
    "top5",
    "top-5 %",
    unit="%",
    higher_is_better=True,
    where="runner",
    description="test top-5 accuracy",
    bounds=PERCENT,
)
TEST_LOSS = _add("test_loss", "test loss", fmt="{:.4f}", higher_is_better=False, where="runner", bounds=POSITIVE)
VAL_TOP1 = _add("val_top1", "val top-1 %", unit="%", higher_is_better=True, where="runner", bounds=PERCENT)
TOP1_FULL = _add(
    "top1_full",
    "F top-1 %",
    unit="%",
    higher_is_better=True,
    where="method",
    description="EDropout's full network F (every unit on), BatchNorm re-estimated on training data",
    bounds=PERCENT,
)
TOP5_FULL = _add("top5_full", "F top-5 %", unit="%", higher_is_better=True, where="method", bounds=PERCENT)
# size and cost of the network (measure)
PARAMS = _add("params", "params", fmt="{:,.0f}", higher_is_better=False)
PARAMS_NONZERO = _add("params_nonzero", "non-zero params", fmt="{:,.0f}", higher_is_better=False)
MACS = _add("macs", "MACs", fmt="{:,.0f}", higher_is_better=False)
MACS_NONZERO = _add(
    "macs_nonzero",
    "non-zero MACs",
    fmt="{:,.0f}",
    higher_is_better=False,
    description="each layer's MACs times its weight density (unstructured sparsity)",
)
MODEL_BYTES = _add("model_bytes", "state dict bytes", fmt="{:,.0f}", higher_is_better=False)
LATENCY_THREADS = _add("latency_threads", "torch threads while timing", fmt="{:.0f}")
PAPER_R_UNITS = _add(
    "paper_r_units",
    "kept units (paper-weighted)",
    fmt="{:,.0f}",
    bounds=POSITIVE,
    description="the authors' kept_counter: conv filters not all zero x k^2, plus classifier inputs not all zero x "
    "classes (other linear layers: outputs not all zero); input channels ignored",
)
# pruning (methods)
PARAM_PRUNING_RATE = _add(
    "param_pruning_rate",
    "params pruned %",
    fmt="{:.1f}",
    scale=100,
    higher_is_better=True,
    where="method",
    description="1 - non-zero parameters / dense parameters",
    bounds=FRACTION,
)
CHANNEL_PRUNING_RATE = _add(
    "channel_pruning_rate", "units pruned %", fmt="{:.1f}", scale=100, where="method", bounds=FRACTION
)
TARGET_SPARSITY = _add("target_sparsity", "target rate", fmt="{:.3f}", where="derived")
# the side-by-side dense comparison (runner)
DENSE_PARAMS = _add("dense_params", "dense params", fmt="{:,.0f}", where="runner")
DENSE_MACS = _add("dense_macs", "dense MACs", fmt="{:,.0f}", where="runner")
MAC_REDUCTION = _add("mac_reduction", "MAC reduction", unit="x", higher_is_better=True, where="runner", bounds=POSITIVE)
THEORETICAL_MAC_REDUCTION = _add(
    "theoretical_mac_reduction",
    "non-zero MAC reduction",
    unit="x",
    higher_is_better=True,
    where="runner",
    bounds=POSITIVE,
)
# time
EPOCHS = _add("epochs", "epochs trained", fmt="{:.0f}", where="runner")
TRAIN_SECONDS = _add("train_seconds", "train (s)", fmt="{:.0f}", unit=" s", higher_is_better=False, where="runner")
TOTAL_TRAIN_SECONDS = _add("total_train_seconds", "total train (s)", fmt="{:.0f}", unit=" s", where="method")
TOTAL_TRAIN_EPOCHS = _add(
    "total_train_epochs",
    "total epochs",
    fmt="{:.0f}",
    where="runner",
    description="every epoch the result cost: dense + pruning + fine-tuning (the budget protocol's unit)",
)
DENSE_EPOCHS = _add(
    "dense_epochs",
    "dense epochs",
    fmt="{:.0f}",
    where="runner",
    description="epochs of the dense network it started from",
)
SEARCH_SECONDS = _add("search_seconds", "search (s)", fmt="{:.1f}", unit=" s", where="method")
CONVERGED_EPOCH = _add("converged_epoch", "converged epoch", fmt="{:.0f}", where="method")
CONVERGED_STEP = _add("converged_step", "converged step", fmt="{:.0f}", where="method")
DENSE_SECONDS = _add(
    "dense_seconds",
    "dense training (s)",
    fmt="{:.0f}",
    unit=" s",
    where="method",
    description="the shared dense network a post-training method started from",
)
PRUNE_SECONDS = _add("prune_seconds", "pruning (s)", fmt="{:.1f}", unit=" s", where="method")
FINETUNE_SECONDS = _add("finetune_seconds", "fine-tuning (s)", fmt="{:.0f}", unit=" s", where="method")
SPARSE_TRAIN_SECONDS = _add("sparse_train_seconds", "sparse training (s)", fmt="{:.0f}", unit=" s", where="method")
SPARSITY_TRAIN_SECONDS = _add(
    "sparsity_train_seconds",
    "sparsity training (s)",
    fmt="{:.0f}",
    unit=" s",
    where="method",
    description="Network Slimming's L1-on-BN training",
)
SPARSITY_TARGET = _add("sparsity_target", "target rate", fmt="{:.3f}", where="method")
UNITS = _add("units", "prunable units", fmt="{:.0f}", where="method", description="EDropout's bits per state")
UNIT_GROUPS = _add("unit_groups", "unit groups", fmt="{:.0f}", where="method")
GENERATIONS = _add("generations", "search generations", fmt="{:.0f}", where="method")
SEARCHED_EPOCHS = _add(
    "searched_epochs",
    "searched epochs",
    fmt="{:.0f}",
    where="method",
    description="epochs in which EDropout's search ran at least one generation",
)
PATIENCE_GENERATIONS = _add("patience_generations", "patience (generations)", fmt="{:.0f}", where="method")
SEARCH_WINDOW_GENERATIONS = _add(
    "search_window_generations",
    "search window (generations)",
    fmt="{:.0f}",
    where="method",
    description="a patience at or above it can never stop the search",
)
ROUNDS = _add("rounds", "pruning rounds", fmt="{:.0f}", where="method")
REWIND_EPOCH = _add("rewind_epoch", "rewind epoch", fmt="{:.0f}", where="method")
# text columns (not in TABLE: results.csv keeps them as text)
STATUS_NOTES = "status_notes"  # what to know before trusting a cell ('; '-joined): top-1 at chance, ...
LATENCY_TRUSTED = "latency_trusted"  # latency stage: every batch size's spread reached its target (bool)
LATENCY_SOURCE = "latency_source"  # 'latency stage' (timed alone) or 'in cell, beside training'
COVERAGE_SKIPPED = "coverage_skipped"  # why EDropout skipped unit groups: 'reason: count', '; '-joined
COVERAGE_PRUNABLE_GROUPS = _add("coverage_prunable_groups", "prunable unit groups", fmt="{:.0f}", where="method")
COVERAGE_SKIPPED_GROUPS = _add(
    "coverage_skipped_groups",
    "skipped unit groups",
    fmt="{:.0f}",
    where="method",
    description="channel groups EDropout could not prune (reasons in coverage_skipped)",
)
COVERAGE_MAX_RATE = _add(
    "coverage_max_parameter_rate",
    "largest reachable param pruning rate",
    fmt="{:.3f}",
    where="method",
    description="parameters removed if every prunable unit went, over all parameters",
    bounds=FRACTION,
)
# derived by report.stats from results.csv
TOP1_DROP = _add(
    "top1_drop",
    "top-1 drop (pp)",
    unit=" pp",
    higher_is_better=False,
    where="derived",
    description="dense top-1 of the same seed minus this cell's",
    bounds=SIGNED_PERCENT,
)
TOP5_DROP = _add(
    "top5_drop", "top-5 drop (pp)", unit=" pp", higher_is_better=False, where="derived", bounds=SIGNED_PERCENT
)
PARAMS_PRUNED_PERCENT = _add(
    "params_pruned_percent", "params pruned %", unit="%", higher_is_better=True, where="derived", bounds=PERCENT
)
PARAMS_KEPT_PERCENT = _add(
    "params_kept_percent",
    "params kept %",
    unit="%",
    higher_is_better=False,
    where="derived",
    description="parameters the network keeps (100 - params pruned %); not the paper's R",
    bounds=PERCENT,
)
PAPER_R_PERCENT = _add(
    "paper_r_percent",
    "paper's R (units kept %)",
    unit="%",
    higher_is_better=False,
    where="derived",
    description="the paper's R: paper_r_units / the dense cell's paper_r_units (same dataset, arch, seed), in %",
    bounds=PERCENT,
)
EFFECTIVE_MAC_REDUCTION = _add(
    "effective_mac_reduction",
    "MAC reduction",
    unit="x",
    higher_is_better=True,
    where="derived",
    description="non-zero MACs for unstructured methods, MACs otherwise",
    bounds=POSITIVE,
)
TRAIN_COST_SECONDS = _add(
    "train_cost_seconds",
    "train cost (s)",
    fmt="{:.0f}",
    higher_is_better=False,
    where="derived",
    description="total_train_seconds, else train_seconds",
    bounds=POSITIVE,
)


@functools.cache
def latency_ms(batch: int) -> Metric:
    """Median CPU latency of one forward pass at `batch` (measure)."""
    return TABLE.get(f"latency_ms_b{batch}") or _add(
        f"latency_ms_b{batch}", f"latency b{batch} (ms)", unit=" ms", higher_is_better=False, bounds=POSITIVE
    )


@functools.cache
def latency_speedup(batch: int) -> Metric:
    """Dense latency / this network's latency at `batch`, timed side by side (runner)."""
    return TABLE.get(f"latency_speedup_b{batch}") or _add(
        f"latency_speedup_b{batch}",
        f"speed-up b{batch}",
        unit="x",
        higher_is_better=True,
        where="runner",
        bounds=POSITIVE,
    )


@functools.cache
def speedup_per_mac_reduction(batch: int) -> Metric:
    """Speed-up / MAC reduction at `batch`: near 1, saved MACs turn into saved time (runner)."""
    name = f"speedup_per_mac_reduction_b{batch}"
    return TABLE.get(name) or _add(name, f"speed-up per MAC reduction b{batch}", where="runner")


@functools.cache
def dense_latency_ms(batch: int) -> Metric:
    """The unpruned architecture's latency at `batch`, timed right after this network (runner)."""
    name = f"dense_latency_ms_b{batch}"
    return TABLE.get(name) or _add(name, f"dense latency b{batch} (ms)", unit=" ms", where="runner")


@functools.cache
def latency_cv(batch: int) -> Metric:
    """Spread of this network's latency at `batch` in the latency stage: robust CV of its round medians."""
    name = f"latency_cv_b{batch}"
    return TABLE.get(name) or _add(name, f"latency CV b{batch}", fmt="{:.1%}", bounds=POSITIVE)


@functools.cache
def dense_latency_cv(batch: int) -> Metric:
    """Spread of the dense network's latency at `batch`, timed interleaved with this one (latency stage)."""
    name = f"dense_latency_cv_b{batch}"
    return TABLE.get(name) or _add(name, f"dense latency CV b{batch}", fmt="{:.1%}", bounds=POSITIVE)


@functools.cache
def latency_speedup_cv(batch: int) -> Metric:
    """Spread of the speed-up at `batch` in the latency stage: robust CV of the rounds' dense / pruned ratios."""
    name = f"latency_speedup_cv_b{batch}"
    return TABLE.get(name) or _add(name, f"speed-up CV b{batch}", fmt="{:.1%}", bounds=POSITIVE)


@functools.cache
def latency_rounds(batch: int) -> Metric:
    """Timing rounds the latency stage needed at `batch` to reach its spread target (or its time cap)."""
    name = f"latency_rounds_b{batch}"
    return TABLE.get(name) or _add(name, f"latency rounds b{batch}", fmt="{:.0f}")


LATENCY_MS_B1, LATENCY_MS_B64 = latency_ms(1), latency_ms(64)
LATENCY_SPEEDUP_B1, LATENCY_SPEEDUP_B64 = latency_speedup(1), latency_speedup(64)
for _b in (1, 64):
    speedup_per_mac_reduction(_b), dense_latency_ms(_b)

for _b in (1, 64):
    latency_cv(_b), dense_latency_cv(_b), latency_speedup_cv(_b), latency_rounds(_b)

# What the report's tables summarise over seeds, in column order.
SUMMARY = (
    TOP1,
    TOP5,
    TOP1_DROP,
    TOP5_DROP,
    PARAM_PRUNING_RATE,
    PAPER_R_PERCENT,
    EFFECTIVE_MAC_REDUCTION,
    LATENCY_SPEEDUP_B1,
    TOTAL_TRAIN_EPOCHS,
    TRAIN_COST_SECONDS,
)
# Quantities a claim in claims.yaml may be checked on.
CLAIMABLE = (
    TOP1,
    TOP5,
    TOP1_DROP,
    TOP5_DROP,
    PARAMS_PRUNED_PERCENT,
    PARAMS_KEPT_PERCENT,
    PAPER_R_PERCENT,
    PARAM_PRUNING_RATE,
    EFFECTIVE_MAC_REDUCTION,
    LATENCY_SPEEDUP_B1,
)


def numeric_columns() -> list[str]:
    """Every metric results.csv carries as a number (the derived ones are computed from these)."""
    return [name for name, m in TABLE.items() if m.where != "derived" or name == TARGET_SPARSITY]


def get(name: str) -> Metric:
    """The metric called `name`; a name outside the table gets a plain entry (label = name)."""
    return TABLE.get(name) or Metric(name, name)
