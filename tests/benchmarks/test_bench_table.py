"""The README's performance table comes from a real saved pytest-benchmark run, not hand-copied numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from benchmark.tools.bench_table import END, START, main


def test_table_from_a_real_saved_run(tmp_path, capsys):
    (tmp_path / "test_tiny.py").write_text(
        textwrap.dedent("""
        def test_sum(benchmark):
            benchmark.group = "tiny"
            benchmark.extra_info.update(cpu="test cpu", cores=2, torch_threads=1, ratio=2.5, ratio_floor=2.0,
                                        ratio_kind="speedup")
            benchmark(sum, range(1000))
        """)
    )
    saved = tmp_path / "run.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:xdist",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_tiny.py"),
            "--benchmark-enable",
            f"--benchmark-json={saved}",
            "-c",
            "/dev/null",
            f"--rootdir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")},  # else it is disabled
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    best = json.loads(saved.read_text())["benchmarks"][0]["stats"]["min"]
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold table\n{END}\nrest\n")
    assert main(["--json", str(saved), "--write", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith(f"{END}\nrest\n")
    assert "on test cpu, 2 cores, 1 torch thread(s)" in text
    assert f"| tiny | sum | {best * 1e3:.1f} ms |" in text and "ratio 2.50x (floor >= 2)" in text
    assert capsys.readouterr().out in text


def test_missing_run_is_one_line(tmp_path, capsys):
    assert main(["--json", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read benchmark JSON") and err.count("\n") == 1
