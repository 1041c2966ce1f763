"""A bounded YAML reader for params.yaml: it refuses what would hang a reader before parsing it.

DVC parses params.yaml before any stage of ours runs, and a file built from YAML aliases (the
"billion laughs": each anchor repeats the previous one ten times) expands to millions of nodes
there, which hangs `dvc repro` with no output. `make study` reads the file with `read_params`
first, so such a file is one line and exit code 2 instead. PyYAML itself shares aliased nodes, so
composing the file is cheap; the expanded size is counted on the composed graph before anything
is built from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from benchmark.core.errors import UserError

MAX_PARAMS_BYTES = 1 << 20  # a real params.yaml is a few KiB
MAX_PARAMS_NODES = 100_000  # scalars, lists and mappings after every alias is expanded


def expanded_nodes(root: yaml.Node, limit: int) -> int:
    """How many nodes `root` stands for once every alias is expanded, counting stops past `limit`.
    A node that contains itself (`&a [*a]`) expands without end: counted as past the limit."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            return limit + 1
        total = 1
        if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
            open_nodes.add(key)
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
            for child in children:
                total += size(child)
                if total > limit:
                    break
            open_nodes.discard(key)
        sizes[key] = total = min(total, limit + 1)
        return total

    return size(root)


def read_params(path: str | Path, kind: str = "study file") -> Any:
    """The YAML content of `path`, or a one-line UserError when it is missing, too large, not text,
    not YAML, or expands (through aliases) to more than MAX_PARAMS_NODES nodes."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{kind} {str(path)!r} not found")
    size = path.stat().st_size
    if size > MAX_PARAMS_BYTES:
        raise UserError(
            f"{kind} {str(path)!r} is {size / (1 << 20):.1f} MiB; refusing to read more than "
            f"{MAX_PARAMS_BYTES >> 20} MiB (a study file is a few KiB)"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{kind} {str(path)!r} is not UTF-8 text (a binary file?)") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        nodes = expanded_nodes(node, MAX_PARAMS_NODES)
        if nodes > MAX_PARAMS_NODES:
            raise UserError(
                f"{kind} {str(path)!r} expands through YAML aliases to more than {MAX_PARAMS_NODES:,} nodes "
                "(an alias bomb?); write the values out instead of nesting aliases"
            )
        return loader.construct_document(node) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{kind} {str(path)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
    finally:
        loader.dispose()
