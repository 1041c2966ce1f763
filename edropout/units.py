"""Prunable units of a network and how a bit vector maps onto its tensors.

Layout 'group' (default): torch-pruning's dependency graph ties channels that must go together
(residual adds, depthwise convs, concatenations); one bit switches one channel of a whole group,
so any state can be removed physically. Layout 'filter': one bit per output channel of every conv
and linear layer on its own, the authors' layout; such masks cannot in general be removed. A bit
also masks the BatchNorm that directly follows the layer (affine parameters and statistics), so a
pruned filter's output is exactly zero.

A group is left out (never pruned) when masking it would not equal removing it, or when removal
is not well defined: channels normalised together (LayerNorm/GroupNorm over channels), grouped
(non-depthwise) convolutions (only whole convolution groups could go; not supported), weight-
standardised convolutions (NFNets), parameters outside modules, or flattening that maps one channel
to several inputs. The reason is kept in `UnitLayout.skipped` and in `coverage()`'s record. The
heads of timm's ViT attention are units of their own (`edropout.heads`): one bit per head. The
classifier's outputs are never pruned.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from edropout.deadline import ANALYSIS_SECONDS, AnalysisTimeout, time_limit
from edropout.heads import attention_modules, head_group, unsupported_attention
from edropout.layout import MaskedOutput, TensorSlice, UnitGroup, UnitLayout

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass
class Coverage:
    """What EDropout can prune in a network, for the record of a run.

    `prunable_parameters` counts every parameter element that at least one unit's removal takes
    away, each element once: the units' own filters/rows and biases, their BatchNorms, and the input
    weights of the layers they feed (the TensorSlices of the groups that are parameters; buffers
    such as BatchNorm statistics are not counted). `max_parameter_rate` is therefore the parameter
    pruning rate with every unit off: an upper bound, since the controller keeps at least
    `min_kept_per_group` units per group. `skipped`: group (its root module) -> why it is not pruned.
    """

    prunable_groups: int
    prunable_units: int
    skipped: dict[str, str]
    prunable_parameters: int
    total_parameters: int

    @property
    def max_parameter_rate(self) -> float:
        return self.prunable_parameters / self.total_parameters if self.total_parameters else 0.0

    def as_dict(self) -> dict:
        return {
            "prunable_groups": self.prunable_groups,
            "prunable_units": self.prunable_units,
            "skipped_groups": len(self.skipped),
            "skipped": [{"group": group, "reason": reason} for group, reason in self.skipped.items()],
            "prunable_parameters": self.prunable_parameters,
            "total_parameters": self.total_parameters,
            "max_parameter_rate": self.max_parameter_rate,
        }


def coverage(model: nn.Module, units: UnitLayout) -> Coverage:
    """The coverage of `units` in `model` (the network they were found in, before any shrink)."""
    parameters = dict(model.named_parameters())
    covered: dict[str, torch.Tensor] = {}
    for group in units.groups:
        for piece in group.slices:
            if piece.name in parameters:
                shape = parameters[piece.name].shape
                mask = covered.setdefault(piece.name, torch.zeros(shape, dtype=torch.bool))
                mask.index_fill_(piece.dim, piece.index, True)
    return Coverage(
        prunable_groups=len(units.groups),
        prunable_units=units.num_units,
        skipped=dict(units.skipped),
        prunable_parameters=int(sum(int(mask.sum()) for mask in covered.values())),
        total_parameters=sum(p.numel() for p in parameters.values()),
    )


def classifier_of(model: nn.Module) -> nn.Module | None:
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Module) and not isinstance(head, nn.Identity):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _is_depthwise(conv: nn.Module) -> bool:
    return isinstance(conv, _CONV) and conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels


def _slices_for(module: nn.Module, name: str, handler: str, index: torch.Tensor) -> list[TensorSlice] | str:
    """The tensors holding the channels that `handler` removes from `module`, or why it is unsupported."""
    own = {n for n, _ in module.named_parameters(recurse=False)} - {"weight", "bias"}
    if isinstance(module, (*_CONV, nn.Linear, *_NORM)) and ("StdConv" in type(module).__name__ or own):
        # e.g. timm's ScaledStdConv2d (NFNets): its weights are standardised over the input channels and
        # its per-filter `gain` is not removed by torch-pruning, so neither side of it can be cut exactly
        extra = f" and has parameter(s) {', '.join(sorted(own))}" if own else ""
        return f"{type(module).__name__} {name} standardises its weights{extra}: removing channels is not exact"
    if isinstance(module, _CONV):
        if module.groups > 1 and not _is_depthwise(module):
            return (
                f"grouped convolution {name} (groups={module.groups}): one channel cannot be removed alone, "
                "only whole convolution groups (not supported)"
            )
        if handler == "prune_in_channels":
            return [] if _is_depthwise(module) else [TensorSlice(f"{name}.weight", 1, index)]
        out = [TensorSlice(f"{name}.weight", 0, index)]
        return out + ([TensorSlice(f"{name}.bias", 0, index)] if module.bias is not None else [])
    if isinstance(module, nn.Linear):
        if handler == "prune_in_channels":
            return [TensorSlice(f"{name}.weight", 1, index)]
        out = [TensorSlice(f"{name}.weight", 0, index)]
        return out + ([TensorSlice(f"{name}.bias", 0, index)] if module.bias is not None else [])
    if isinstance(module, _NORM):
        names = [n for n in ("weight", "bias", "running_mean", "running_var") if getattr(module, n, None) is not None]
        return [TensorSlice(f"{name}.{n}", 0, index) for n in names]
    if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
        return f"{type(module).__name__} {name} normalises over channels: masking one is not removing it"
    return f"{type(module).__name__} {name}: its channels cannot be removed (only conv, linear and BatchNorm)"


def _output_dim(module: nn.Module) -> int:
    return -1 if isinstance(module, nn.Linear) else 1


def _group_units(model: nn.Module, example_inputs: torch.Tensor, classifier: nn.Module | None) -> UnitLayout:
    names = {m: n for n, m in model.named_modules()}
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs, verbose=False)
    ignored = [classifier] if classifier is not None else []
    groups, skipped = [], {}
    for raw in graph.get_all_groups(ignored_layers=ignored, root_module_types=(*_CONV, nn.Linear)):
        root_dep, root_idxs = raw[0].dep, raw[0].idxs
        root_name = names.get(root_dep.target.module, str(root_dep.target.name))
        size = len(root_idxs)
        group = UnitGroup(
            root_name,
            size,
            root=root_dep.target.module,
            root_handler=root_dep.handler,
            root_index=torch.as_tensor([int(i) for i in root_idxs]),
        )
        problem = None
        for item in raw:
            module, handler = item.dep.target.module, getattr(item.dep.handler, "__name__", "")
            if type(module).__module__.startswith("torch_pruning"):
                continue  # the graph's own bookkeeping nodes (adds, reshapes, ...)
            if module not in names:
                problem = f"parameter outside a module in {item.dep.target.name}"
                break
            index = torch.as_tensor([int(i) for i in item.idxs])
            if len(index) != size:
                problem = f"{names[module]} sees one channel as {len(index) / size:g} inputs (a reshape or split)"
                break
            found = _slices_for(module, names[module], handler, index)
            if isinstance(found, str):
                problem = found
                break
            group.slices.extend(found)
            if handler == "prune_out_channels":
                group.outputs.append(MaskedOutput(module, names[module], _output_dim(module), index))
        if problem is None and group.outputs:
            groups.append(group)
        else:
            skipped[root_name] = problem or "no maskable output"
    _heads_as_units(model, groups, skipped)
    return UnitLayout(groups, "group", skipped)


def _heads_as_units(model: nn.Module, groups: list[UnitGroup], skipped: dict[str, str]) -> None:
    """Replace the skipped qkv groups of supported attention modules by one group of heads each."""
    names = {m: n for n, m in model.named_modules()}
    for qkv, attn_name in attention_modules(model).items():
        qkv_name = names[qkv]
        if qkv_name not in skipped:
            continue
        attn = model.get_submodule(attn_name)
        problem = unsupported_attention(attn)
        if problem is None:
            del skipped[qkv_name]
            groups.append(head_group(attn, attn_name))
        else:
            skipped[qkv_name] = f"attention heads of {attn_name} are not units: {problem}"


def _following_norms(model: nn.Module, example_inputs: torch.Tensor) -> dict[nn.Module, tuple[str, nn.Module]]:
    """conv/linear -> (name, BatchNorm) for each BatchNorm whose input is exactly that layer's output."""
    names = {m: n for n, m in model.named_modules()}
    produced: dict[int, tuple[torch.Tensor, nn.Module]] = {}
    found: dict[nn.Module, tuple[str, nn.Module]] = {}

    def after_layer(module, inputs, output):
        produced[id(output)] = (output, module)

    def before_norm(module, inputs):
        source = produced.get(id(inputs[0]))
        if source is not None and source[0] is inputs[0] and source[1] not in found:
            found[source[1]] = (names[module], module)

    handles = [m.register_forward_hook(after_layer) for m in model.modules() if isinstance(m, (*_CONV, nn.Linear))]
    handles += [m.register_forward_pre_hook(before_norm) for m in model.modules() if isinstance(m, _NORM)]
    try:
        with torch.no_grad():
            model(example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return found


def _dead_inputs(graph, module: nn.Module, own: set, names: dict, size: int) -> list[TensorSlice]:
    """Consumers' input weights of `module`'s output channels, when masking the filter alone makes them
    exactly dead: no other layer writes to these channels (no residual partner) and each channel maps
    to one input. Assumes the activations in between map 0 to 0 (ReLU, SiLU, GELU, ...)."""
    handler = tp.prune_conv_out_channels if isinstance(module, _CONV) else tp.prune_linear_out_channels
    out = []
    for item in graph.get_pruning_group(module, handler, idxs=list(range(size))):
        target, name = item.dep.target.module, getattr(item.dep.handler, "__name__", "")
        if type(target).__module__.startswith("torch_pruning"):
            continue
        if target not in names:
            return []
        if name == "prune_out_channels" or isinstance(target, _NORM):
            if target not in own:
                return []  # another layer adds into these channels: they are not dead
            continue
        index = torch.as_tensor([int(i) for i in item.idxs])
        found = _slices_for(target, names[target], name, index)
        if isinstance(found, str) or len(index) != size:
            return []
        out.extend(found)
    return out


def _filter_units(model: nn.Module, example_inputs: torch.Tensor, classifier: nn.Module | None) -> UnitLayout:
    """One group per conv/linear layer. A BatchNorm fed directly by the layer is masked with it (its
    affine parameters and statistics belong to the filter), so a pruned filter outputs exactly zero;
    consumers' input weights are part of the unit where that makes them exactly dead."""
    names = {m: n for n, m in model.named_modules()}
    norms = _following_norms(model, example_inputs)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs, verbose=False)
    groups = []
    for name, module in model.named_modules():
        if module is classifier or not isinstance(module, (*_CONV, nn.Linear)):
            continue
        size = module.out_channels if isinstance(module, _CONV) else module.out_features
        index = torch.arange(size)
        group = UnitGroup(name, size)
        group.outputs.append(MaskedOutput(module, name, _output_dim(module), index))
        group.slices.append(TensorSlice(f"{name}.weight", 0, index))
        if module.bias is not None:
            group.slices.append(TensorSlice(f"{name}.bias", 0, index))
        own = {module}
        if module in norms:
            norm_name, norm = norms[module]
            own.add(norm)
            group.outputs.append(MaskedOutput(norm, norm_name, 1, index))
            group.slices.extend(_slices_for(norm, norm_name, "prune_out_channels", index))
        try:
            dead = _dead_inputs(graph, module, own, names, size)
        except Exception:  # noqa: BLE001 - torch-pruning cannot follow this layer: no input weights are claimed
            dead = []
        group.slices.extend(dead)
        groups.append(group)
    return UnitLayout(groups, "filter")


def find_units(
    model: nn.Module,
    example_inputs: torch.Tensor,
    layout: str = "group",
    classifier: nn.Module | None = None,
    seconds: float | None = ANALYSIS_SECONDS,
) -> UnitLayout:
    """The prunable units of `model`.

    Raises ValueError, with a one-line message that names the problem, when there are none, when
    torch-pruning cannot trace the model, or when its analysis runs past `seconds` (it never ends
    on some architectures; see `edropout.deadline`): the caller can refuse the architecture before
    training.
    """
    classifier = classifier if classifier is not None else classifier_of(model)
    was_training = model.training
    model.eval()
    try:
        with time_limit(seconds):
            if layout == "group":
                units = _group_units(model, example_inputs, classifier)
            else:
                units = _filter_units(model, example_inputs, classifier)
    except (RuntimeError, TypeError, KeyError, IndexError, AttributeError, NotImplementedError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        problem = f"torch-pruning cannot trace its channel dependencies ({first})"
        raise ValueError(f"{type(model).__name__} cannot be pruned by EDropout: {problem}") from exc
    except AnalysisTimeout as exc:
        problem = f"{exc} (torch-pruning's group search does not terminate on some attention blocks)"
        raise ValueError(f"{type(model).__name__} cannot be pruned by EDropout: {problem}") from None
    finally:
        model.train(was_training)
    if units.num_units == 0:
        raise ValueError(_nothing_prunable(model, units))
    return units


def _nothing_prunable(model: nn.Module, units: UnitLayout) -> str:
    """One line: why `model` has no prunable unit (the most common reason among its skipped groups)."""
    head = f"{type(model).__name__} has no prunable units for EDropout (layout {units.layout!r})"
    if not units.skipped:
        return f"{head}: no conv or linear layer besides the classifier"
    kinds = Counter(reason.split()[0] for reason in units.skipped.values())  # the module type that blocks it
    kind, count = kinds.most_common(1)[0]
    group, reason = next((g, r) for g, r in units.skipped.items() if r.startswith(kind))
    return f"{head}: all {len(units.skipped)} unit groups are skipped, {count} by {kind} (e.g. {group}: {reason})"


def shrink(model: nn.Module, example_inputs: torch.Tensor, units: UnitLayout, keep: torch.Tensor) -> nn.Module:
    """Physically remove the units whose bit in `keep` (num_units bools) is False, in place.

    Only for layout 'group' (the 'filter' layout's coupled channels cannot be removed one by one).
    Uses torch-pruning, so every coupled layer (BN, residual partners, consumers' inputs) follows;
    groups with their own `remove` (attention heads) are removed by it.
    """
    if units.layout != "group":
        raise ValueError("only the 'group' layout can be removed physically")
    was_training = model.training
    model.eval()  # tracing with a single example must not meet BatchNorm's batch statistics
    try:
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs, verbose=False)
        removals = []
        for bits, group in zip(units.split(keep.reshape(-1)), units.groups):
            off = (~bits).nonzero().flatten()
            if off.numel() and group.remove is not None:
                removals.append((group.remove, off))  # after torch-pruning, whose graph describes the model as built
            elif off.numel():
                graph.get_pruning_group(group.root, group.root_handler, idxs=group.root_index[off].tolist()).prune()
        for remove, off in removals:
            remove(off)
    finally:
        model.train(was_training)
    return model
