"""Attention heads as prunable units (timm's ViT `Attention`: a fused qkv Linear, then `proj`).

torch-pruning sees the qkv projection's output channels as plain channels; removing one of them
alone is not defined (q, k and v of a head are split by a reshape). A whole head can be removed
exactly: its q, k and v rows of qkv and its input columns of proj go, and `num_heads` drops by one.
Masking the head's v rows makes its attention output exactly zero (softmax(q k^T) 0 = 0), which is
what proj sees after removal; q and k need no mask. One bit per head; a head's group has one
TensorSlice per position inside the head (the slice's index runs over heads), so the rest of the
library (snapshots, write-back, parameter counts) handles heads like channels.
"""

from __future__ import annotations

import torch
from torch import nn

try:
    from timm.models.vision_transformer import Attention
except ImportError:  # timm is optional for the library: without it no attention module has head units
    Attention = None

from edropout.layout import MaskedOutput, TensorSlice, UnitGroup


def unsupported_attention(module: nn.Module) -> str | None:
    """Why the heads of `module` (a module with `qkv` and `proj`) cannot be units, or None.

    Only timm's plain `Attention` class is accepted: other classes with the same layers may tie the
    heads elsewhere (per-head relative position tables, rotary embeddings, talking heads)."""
    if type(module) is not Attention:
        return f"{type(module).__name__} is not timm's plain Attention (its heads may be tied elsewhere)"
    qkv, proj = getattr(module, "qkv", None), getattr(module, "proj", None)
    if not (isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear)):
        return "attention without qkv/proj Linear layers"
    heads, head_dim, attn_dim = (getattr(module, n, None) for n in ("num_heads", "head_dim", "attn_dim"))
    if not all(isinstance(v, int) for v in (heads, head_dim, attn_dim)) or heads * head_dim != attn_dim:
        return f"{type(module).__name__} has no num_heads/head_dim/attn_dim to shrink"
    if qkv.out_features != 3 * attn_dim or proj.in_features != attn_dim:
        return f"{type(module).__name__}: qkv/proj widths do not match {heads} heads of {head_dim}"
    if not isinstance(getattr(module, "norm", nn.Identity()), nn.Identity) or getattr(module, "gate", None) is not None:
        return f"{type(module).__name__}: a norm or gate over all heads couples them"
    return None


def attention_modules(model: nn.Module) -> dict[nn.Module, str]:
    """qkv Linear -> name of its attention module, for every module that has both qkv and proj."""
    return {
        m.qkv: name
        for name, m in model.named_modules()
        if isinstance(getattr(m, "qkv", None), nn.Module) and hasattr(m, "proj")
    }


def head_group(attn: nn.Module, name: str) -> UnitGroup:
    """One bit per head of `attn` (checked by `unsupported_attention`)."""
    heads, head_dim, attn_dim = attn.num_heads, attn.head_dim, attn.attn_dim
    starts = torch.arange(heads) * head_dim
    group = UnitGroup(f"{name}.heads", heads, remove=lambda off: _remove_heads(attn, off))
    for part in range(3):  # q, k, v rows of qkv
        for j in range(head_dim):
            index = part * attn_dim + starts + j
            group.slices.append(TensorSlice(f"{name}.qkv.weight", 0, index))
            if attn.qkv.bias is not None:
                group.slices.append(TensorSlice(f"{name}.qkv.bias", 0, index))
            if part == 2:
                group.outputs.append(MaskedOutput(attn.qkv, f"{name}.qkv", -1, index))
    for j in range(head_dim):
        group.slices.append(TensorSlice(f"{name}.proj.weight", 1, starts + j))
    return group


@torch.no_grad()
def _remove_heads(attn: nn.Module, off: torch.Tensor) -> None:
    heads, head_dim, attn_dim = attn.num_heads, attn.head_dim, attn.attn_dim
    keep = torch.tensor([h for h in range(heads) if h not in set(off.tolist())])
    inside = (keep[:, None] * head_dim + torch.arange(head_dim)).flatten()
    rows = torch.cat([part * attn_dim + inside for part in range(3)])
    qkv, proj = attn.qkv, attn.proj
    qkv.weight = nn.Parameter(qkv.weight.index_select(0, rows.to(qkv.weight.device)))
    if qkv.bias is not None:
        qkv.bias = nn.Parameter(qkv.bias.index_select(0, rows.to(qkv.bias.device)))
    proj.weight = nn.Parameter(proj.weight.index_select(1, inside.to(proj.weight.device)))
    qkv.out_features, proj.in_features = len(rows), len(inside)
    attn.num_heads, attn.attn_dim = len(keep), len(inside)
