"""The layout's rules, checked on the source: imports point down, no cycles, small modules and functions,
and the code fingerprint is the cell layer + EDropout + the method's and the dataset's own files."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

# Layers of benchmark/, lowest first. A module may import its own layer and the layers its entry lists.
LAYERS = {
    "core": {"core"},
    "cell": {"core", "cell"},
    "study": {"core", "cell", "study"},
    "report": {"core", "report"},
    "tools": {"core", "cell", "study", "report", "tools"},
    "entry": {"core", "cell", "study", "report", "tools", "entry"},
}
OUTSIDE = {  # the other top-level packages, and the benchmark layers each may import
    "baselines": {"core", "cell"},
    "edropout": set(),
    "pipelines": {"core", "cell", "study", "report"},
}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    files = {}
    for package in ("benchmark", "baselines", "edropout", "pipelines"):
        for path in sorted((ROOT / package).rglob("*.py")):
            files[_module_name(path)] = path
    return files


SOURCES = _sources()


def layer(module: str) -> str:
    """The layer of a module of this project: a benchmark sub-package, 'entry', or a top-level package."""
    parts = module.split(".")
    if parts[0] != "benchmark":
        return parts[0]
    if len(parts) == 1:
        return "core"  # the package face: a version string
    if parts[1] in ("api", "methods", "pruning", "training"):
        return "cell"  # the plugin API (and its 0.1 names, deprecated) re-export the cell layer's contract
    if parts[1] in ("cli", "__main__"):
        return "entry"
    return parts[1]


def imports_of(module: str) -> set[str]:
    """Every project module `module` imports, at the top or inside a function."""
    tree = ast.parse(SOURCES[module].read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [
                f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in SOURCES else node.module
                for alias in node.names
            ]
        else:
            continue
        out |= {name for name in names if name in SOURCES and name != module}
    return out


GRAPH = {module: imports_of(module) for module in SOURCES}


def test_every_layer_is_known():
    known = set(LAYERS) | set(OUTSIDE)
    assert {layer(m) for m in SOURCES} <= known, {m: layer(m) for m in SOURCES if layer(m) not in known}


def test_imports_only_point_down():
    upward = []
    for module, targets in GRAPH.items():
        here = layer(module)
        allowed = LAYERS.get(here, OUTSIDE.get(here))
        for target in targets:
            there = layer(target)
            if there in LAYERS and there not in allowed and there != here:
                upward.append(f"{module} ({here}) imports {target} ({there})")
            elif there in OUTSIDE and there != here:  # nothing imports baselines, edropout or pipelines directly
                if not (there == "edropout" and here in ("cell", "baselines", "tools")):
                    upward.append(f"{module} ({here}) imports {target} ({there})")
    assert upward == []


def test_no_import_cycles():
    """Between modules, counting imports inside functions too (a package's __init__ importing its own
    modules is how a package is built, not a cycle)."""
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if module.startswith(target + ".") or target.startswith(module + "."):
                continue
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_rules_catch_an_upward_arrow_and_a_cycle():
    """The checks above are not vacuous: a cell module importing the study layer is found, and so is a cycle."""
    assert layer("benchmark.cell.runner") == "cell" and layer("benchmark.study.scheduler") == "study"
    assert "study" not in LAYERS["cell"] and "report" not in LAYERS["study"]
    assert "benchmark.cell.runner" in GRAPH["benchmark.study.scheduler"]  # a real downward edge is seen
    assert "benchmark.core.paths" in GRAPH["benchmark.core.provenance"]


def test_modules_and_functions_stay_small():
    too_long = []
    for module, path in SOURCES.items():
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{module}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{module}.{node.name}: {length} lines")
    assert too_long == []


def test_baselines_import_the_typed_plugin_api():
    for path in sorted((ROOT / "baselines").glob("*.py")):
        if path.name.startswith("_"):
            continue
        text = path.read_text()
        if "= register_control(" in text:  # a control of EDropout, registered through baselines/edropout.py
            assert "from baselines.edropout import" in text and "__name__" in text, path.name
            continue
        assert "from benchmark.api import" in text and "(ctx: CellContext)" in text, path.name


# -- the code fingerprint -----------------------------------------------------------------------------------

FINGERPRINTS = """
import json, sys
from benchmark.cell import fingerprint
from benchmark.cell.runner import identify
from benchmark.core.config import RunConfig
for _ in sys.stdin:  # one line in, the fingerprints as the files are now out: the imports happen once
    fingerprint._fingerprint.cache_clear()
    out = {}
    for method, dataset in [("l1_filter", "digits"), ("edropout", "digits"), ("l1_filter", "mnist")]:
        cfg = RunConfig(method=method)
        cfg.data.name, cfg.model.arch = dataset, "test_resnet"
        if method != "edropout":
            cfg.method_args["sparsity"] = 0.5
        out[f"{method}/{dataset}"] = identify(cfg).code_hash
    print(json.dumps(out), flush=True)
"""


class _Fingerprints:
    """A process in the copied repository that prints the three cells' fingerprints whenever asked."""

    def __init__(self, repo: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FINGERPRINTS],
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(repo)},
        )

    def __call__(self) -> dict[str, str]:
        self.proc.stdin.write("now\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, self.proc.stderr.read()
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0, self.proc.stderr.read()


def _touch(repo: Path, name: str) -> None:
    path = repo / name
    path.write_text(path.read_text() + "\n# edited\n")


EDITS = [  # (files edited, cells whose fingerprint must change), applied one after the other
    (
        [
            "benchmark/report/render.py",
            "benchmark/core/errors.py",
            "benchmark/core/tracking.py",
            "benchmark/study/scheduler.py",
            "benchmark/cli.py",
            "benchmark/api.py",
            "README.md",
        ],
        set(),
    ),
    (["benchmark/cell/data/cifar.py", "baselines/fpgm.py"], set()),  # another dataset's and method's files
    (["baselines/l1_filter.py"], {"l1_filter/digits", "l1_filter/mnist"}),  # the method's own file
    (["benchmark/cell/data/mnist.py"], {"l1_filter/mnist"}),  # the dataset's own file
    (["edropout/energy.py"], {"l1_filter/digits", "edropout/digits", "l1_filter/mnist"}),
    (["benchmark/cell/measure.py"], {"l1_filter/digits", "edropout/digits", "l1_filter/mnist"}),  # the cell layer
]


def test_the_fingerprint_is_the_cell_layer_plus_own_files(repo_copy):
    fingerprints = _Fingerprints(repo_copy)
    before = fingerprints()
    for edits, changed in EDITS:
        for name in edits:
            _touch(repo_copy, name)
        after = fingerprints()
        assert {cell for cell in before if before[cell] != after[cell]} == changed, edits
        before = after
    fingerprints.close()


IS_DONE = """
import json, sys
from benchmark.cell.runner import identify, is_done
from benchmark.core.config import RunConfig
cfg = RunConfig(method="dense", seed=0)
cfg.model.arch, cfg.train.epochs, cfg.data.input_size = "test_resnet", 1, 8
cfg.measure.latency_repeats, cfg.measure.latency_warmup = 2, 1
print(json.dumps(is_done(sys.argv[1], identify(cfg))))
"""


def test_a_result_copied_to_another_clone_is_reused(repo_copy, tmp_path):
    """Nothing in the fingerprint or the stored result depends on where the clone lives."""
    env = {**os.environ, "PYTHONPATH": str(repo_copy)}
    out = repo_copy / "results" / "one"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmark",
            "run",
            "--arch",
            "test_resnet",
            "--epochs",
            "1",
            "--set",
            "data.input_size=8",
            "--set",
            "measure.latency_repeats=2",
            "--set",
            "measure.latency_warmup=1",
            "--no-track",
            "--quiet",
            "--out",
            str(out),
        ],
        cwd=repo_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    other = tmp_path / "elsewhere" / "clone"
    subprocess.run(["git", "clone", "-q", str(repo_copy), str(other)], check=True)
    copied = other / "results" / "one"
    copied.parent.mkdir(parents=True)
    subprocess.run(["cp", "-r", str(out), str(copied)], check=True)
    assert str(repo_copy) not in (copied / "metrics.json").read_text()
    for repo, folder in ((repo_copy, out), (other, copied)):
        proc = subprocess.run(
            [sys.executable, "-c", IS_DONE, str(folder)],
            cwd=repo,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(repo)},
            timeout=300,
        )
        assert proc.returncode == 0 and json.loads(proc.stdout.strip().splitlines()[-1]) is True, proc.stderr
