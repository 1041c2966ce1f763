"""Method plugins: the README's recipe end to end, extra plugin folders, broken plugins, the contract.

Plugin folders named by PRUNING_BENCH_PLUGINS are used through the command line (a subprocess), so
the registry of the test process is never polluted by the throw-away methods written here.
"""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from benchmark.cell import plugins as methods
from benchmark.cell.plugins import GRANULARITIES, METHODS, SCHEDULES, discover
from benchmark.core.errors import UserError
from tests.conftest import TINY_ARGS, mlflow_runs, run_cli

discover()
REGISTERED = METHODS.names()

HALVE_FC = '''
"""halve_fc: train, then zero the half of the classifier's weights with the smallest magnitude."""

import torch.nn.utils.prune as prune

from benchmark.api import MethodResult, register_method


@register_method("halve_fc", citation="a test of the README's plugin recipe",
                 granularity="unstructured", schedule="after_training")
def halve_fc(ctx):
    ctx.train(ctx.model, epochs=1)
    fc = ctx.model.get_classifier()
    prune.l1_unstructured(fc, "weight", amount=0.5)
    prune.remove(fc, "weight")
    return MethodResult(ctx.model, metrics={"fc_zeroed": int((fc.weight == 0).sum())})
'''

GOOD = '''
"""keep_all: a healthy plugin next to broken ones."""

from benchmark.api import MethodResult, register_method


@register_method("keep_all", citation="test", granularity="none", schedule="none")
def keep_all(ctx):
    ctx.train(ctx.model, epochs=1)
    return MethodResult(ctx.model)
'''

BROKEN_FILES = {
    "again_dense.py": (
        '''
"""A second 'dense'."""
from benchmark.api import MethodResult, register_method


@register_method("dense", citation="copy", granularity="none", schedule="none")
def dense(ctx):
    return MethodResult(ctx.model)
''',
        "duplicate method name 'dense'",
    ),
    "needs_missing.py": (
        '''
"""Depends on a package that is not installed."""
from benchmark.api import register_method
import package_that_is_not_installed_xyz


@register_method("needs_missing", citation="test", granularity="none", schedule="none")
def needs_missing(ctx):
    return None
''',
        "ModuleNotFoundError: No module named 'package_that_is_not_installed_xyz'",
    ),
    "odd_granularity.py": (
        '''
"""Breaks the contract: an unknown granularity."""
from benchmark.api import register_method


@register_method("odd_granularity", citation="test", granularity="weird", schedule="none")
def odd_granularity(ctx):
    return None
''',
        "granularity 'weird' is not one of none, structured, unstructured",
    ),
}


@pytest.fixture(autouse=True)
def private_stores(tmp_path, monkeypatch):
    """Dense checkpoints and results of these tests go to the test's own folder, not the repository."""
    monkeypatch.setenv("BENCHMARK_CHECKPOINTS", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("BENCHMARK_RESULTS", str(tmp_path / "results"))
    monkeypatch.delenv(methods.PLUGIN_PATH_ENV, raising=False)


def _folder(path: Path, files: dict[str, str]) -> Path:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text.lstrip())
    return path


@pytest.fixture
def broken_folder(tmp_path) -> Path:
    return _folder(tmp_path / "broken_plugins", {"keep_all.py": GOOD, **{n: t for n, (t, _) in BROKEN_FILES.items()}})


def test_readme_recipe_plugin_outside_the_repo_runs_end_to_end(tmp_path, mlflow_uri):
    folder = _folder(tmp_path / "my_methods", {"halve_fc.py": HALVE_FC})
    other = _folder(tmp_path / "other_methods", {})  # the variable is a search path, like PATH
    env = {methods.PLUGIN_PATH_ENV: os.pathsep.join([str(other), str(folder)])}

    listed = run_cli("list", "methods", env=env)
    assert listed.returncode == 0, listed.stderr
    (line,) = [ln for ln in listed.stdout.splitlines() if ln.startswith("halve_fc ")]
    assert line.split()[1:3] == ["unstructured", "after_training"]
    assert "BROKEN" not in listed.stdout

    out = tmp_path / "cell"
    proc = run_cli("run", "--method", "halve_fc", "--out", str(out), *TINY_ARGS, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["method"] == "halve_fc" and metrics["epochs"] == 1
    assert metrics["fc_zeroed"] == 512 * 10 // 2  # resnet18's 512 -> 10 classifier, half of it
    assert metrics["params"] - metrics["params_nonzero"] == metrics["fc_zeroed"]
    (run,) = mlflow_runs(mlflow_uri)
    assert run.info.status == "FINISHED" and run.data.tags["method"] == "halve_fc"
    assert run.info.run_id == metrics["mlflow_run_id"]


def test_broken_plugins_are_one_line_each_and_the_rest_still_works(tmp_path, broken_folder, mlflow_uri):
    env = {methods.PLUGIN_PATH_ENV: str(broken_folder)}
    listed = run_cli("list", "methods", env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("METHOD ")  # the header, then the methods
    assert any(ln.startswith("keep_all ") for ln in lines) and lines[1].startswith("dense ")
    broken = [ln for ln in lines if ln.startswith("BROKEN")]
    assert len(broken) == 3, listed.stdout
    for name, (_, problem) in BROKEN_FILES.items():
        (line,) = [ln for ln in broken if f"{broken_folder / name}: " in ln]
        assert problem in line
        assert "UserError" not in line and "Traceback" not in line
    # the duplicate names the file that registered the name first
    assert str(Path(methods.PLUGIN_DIR) / "dense.py") in next(ln for ln in broken if "again_dense" in ln)

    out = tmp_path / "cell"
    proc = run_cli("run", "--method", "dense", "--out", str(out), *TINY_ARGS, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "metrics.json").read_text())["status"] == "finished"
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 3, proc.stderr
    for name in BROKEN_FILES:
        assert sum(str(broken_folder / name) in ln for ln in warnings) == 1
    (run,) = mlflow_runs(mlflow_uri)
    assert run.info.status == "FINISHED"


@pytest.mark.parametrize(
    "method, file", [("odd_granularity", "odd_granularity.py"), ("needs_missing", "needs_missing.py")]
)
def test_running_a_broken_method_is_a_one_line_error(method, file, tmp_path, broken_folder, mlflow_uri):
    out = tmp_path / "cell"
    proc = run_cli(
        "run", "--method", method, "--out", str(out), *TINY_ARGS, env={methods.PLUGIN_PATH_ENV: str(broken_folder)}
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert f"method {method!r} is not available" in lines[0] and str(broken_folder / file) in lines[0]
    assert BROKEN_FILES[file][1] in lines[0]
    assert not (out / "metrics.json").exists()
    assert mlflow_runs(mlflow_uri) == []


def test_missing_plugin_folder_is_reported_not_fatal(tmp_path):
    missing = tmp_path / "no_such_folder"
    listed = run_cli("list", "methods", env={methods.PLUGIN_PATH_ENV: str(missing)})
    assert listed.returncode == 0, listed.stderr
    header, first = listed.stdout.splitlines()[:2]
    assert header.startswith("METHOD ") and first.startswith("dense ")
    (line,) = [ln for ln in listed.stdout.splitlines() if ln.startswith("BROKEN")]
    assert str(missing) in line and "not found" in line


# -- in-process: a private registry, so the throw-away methods do not leak into other tests ----------


@pytest.fixture
def private_registry(monkeypatch):
    from benchmark.core.registry import Registry

    monkeypatch.setattr(methods, "METHODS", Registry("method"))
    monkeypatch.setattr(methods, "BROKEN", {})
    monkeypatch.setattr(methods, "BROKEN_NAMES", {})
    monkeypatch.setattr(methods, "_scanned", set())
    return methods


def test_a_plugin_that_fails_half_way_registers_nothing(tmp_path, private_registry):
    folder = _folder(
        tmp_path / "p",
        {
            "half.py": textwrap.dedent('''
        """Registers one method, then fails."""
        from benchmark.api import register_method

        @register_method("half_first", citation="test", granularity="none", schedule="none")
        def first(ctx):
            return None

        raise RuntimeError("boom\\nsecond line")
    ''')
        },
    )
    private_registry.discover([folder])
    assert "half_first" not in private_registry.METHODS
    assert private_registry.BROKEN == {str(folder / "half.py"): "RuntimeError: boom second line (line 8)"}


def test_same_file_name_in_two_folders_loads_both(tmp_path, private_registry):
    for sub, name in (("a", "same_a"), ("b", "same_b")):
        _folder(tmp_path / sub, {"same.py": GOOD.replace('"keep_all"', f'"{name}"')})
    private_registry.discover([tmp_path / "a", tmp_path / "b"])
    assert {"same_a", "same_b"} <= set(private_registry.METHODS.names()) and not private_registry.BROKEN


CONTRACT_BREAKS = {
    "granularity": (dict(granularity="weird"), "granularity 'weird' is not one of"),
    "schedule": (dict(schedule="sometimes"), "schedule 'sometimes' is not one of"),
    "citation": (dict(citation=""), "citation must be a non-empty string"),
    "check_args": (dict(check_args="strict"), "check_args must be callable"),
}


@pytest.mark.parametrize("case", sorted(CONTRACT_BREAKS))
def test_contract_violations_are_user_errors(case, private_registry):
    kwargs = {"citation": "test", "granularity": "none", "schedule": "none", **CONTRACT_BREAKS[case][0]}
    with pytest.raises(UserError, match=CONTRACT_BREAKS[case][1]):
        private_registry.register_method(f"contract_{case}", **kwargs)(lambda ctx: None)
    with pytest.raises(UserError, match="not callable"):
        private_registry.register_method("not_callable", citation="t", granularity="none", schedule="none")(42)
    assert len(private_registry.METHODS) == 0


def test_every_plugin_in_baselines_loads():
    """A baseline that fails to import would silently drop out of the contract checks below."""
    ours = {
        where: problem for where, problem in methods.BROKEN.items() if Path(where).parent == Path(methods.PLUGIN_DIR)
    }
    assert ours == {}
    on_disk = {p.stem for p in Path(methods.PLUGIN_DIR).glob("*.py") if not p.name.startswith("_")}
    sources = {Path(METHODS.get(n).source).stem for n in REGISTERED}
    assert on_disk <= sources, f"plugin files that register no method: {sorted(on_disk - sources)}"


@pytest.mark.parametrize("name", REGISTERED)
def test_registered_method_keeps_the_contract(name):
    import ast

    spec = METHODS.get(name)
    assert spec.name == name and callable(spec.fn)
    assert isinstance(spec.citation, str) and spec.citation.strip()
    assert spec.granularity in GRANULARITIES and spec.schedule in SCHEDULES
    assert spec.check_args is None or callable(spec.check_args)
    source = Path(spec.source)
    assert source.is_file(), f"{name}: source {spec.source!r} is not a file"
    docstring = ast.get_docstring(ast.parse(source.read_text()))
    assert docstring and docstring.strip(), f"{source} has no module docstring"
