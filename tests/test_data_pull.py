"""The `data` stage's download path, against a real HTTP server on 127.0.0.1 serving tiny files in
the datasets' real formats (gzipped IDX files, a CIFAR-10 tar.gz): torchvision's `download_url`
and MD5 check run unchanged, the torchvision classes' mirror/URL attributes point at the server.
Also: a corrupt file, a server that dies mid-transfer, a stalled server, offline, and a real
`dvc push` / `dvc pull` of the stage's output through a local-directory remote."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import pytest
import yaml
from torchvision import datasets as tvd

from benchmark.cell.data import build_dataset, get_spec
from benchmark.cell.data import cifar as cifar_mod
from benchmark.core.config import DataConfig
from benchmark.study.pull import STAGING, TIMEOUT_ENV, pull
from tests.conftest import ROOT
from tests.test_data_formats import write_cifar10, write_mnist

REFUSED = "http://127.0.0.1:1/"


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    mode: dict[str, str] = {}  # path -> "cut" (dies mid-transfer) | "stall" (sends headers, then nothing)

    def do_GET(self):  # noqa: N802 - http.server's name
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        mode = self.mode.get(self.path)
        if mode == "cut":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the server dies mid-transfer
            self.close_connection = True
            return
        if mode == "stall":
            time.sleep(3)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    handler = type("Handler", (_Handler,), {"files": {}, "mode": {}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    yield handler
    httpd.shutdown()
    httpd.server_close()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def serve_mnist(server, monkeypatch, tmp_path: Path, cls=tvd.KMNIST, corrupt: str | None = None) -> dict:
    """Gzipped IDX files of a tiny MNIST-style set on the server; `cls` points at them with their MD5s."""
    source = tmp_path / "source"
    data = write_mnist(source, cls.__name__)
    resources = []
    for raw in sorted((source / cls.__name__ / "raw").iterdir()):
        body = gzip.compress(raw.read_bytes(), mtime=0)
        name = f"{cls.__name__}/{raw.name}.gz"
        resources.append((f"{raw.name}.gz", _md5(body)))
        server.files[f"/{name}"] = body[:-20] + b"x" * 20 if corrupt == raw.name else body
    monkeypatch.setattr(cls, "mirrors", [REFUSED, f"{server.url}{cls.__name__}/"])  # first mirror down
    monkeypatch.setattr(cls, "resources", resources)
    return data


def serve_cifar10(server, monkeypatch, tmp_path: Path) -> tuple[dict, str]:
    source = tmp_path / "cifar-source"
    data = write_cifar10(source)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    body = buffer.getvalue()
    server.files["/cifar-10-python.tar.gz"] = body
    cls = cifar_mod._PresenceCheckedCIFAR10
    monkeypatch.setattr(cls, "url", f"{server.url}cifar-10-python.tar.gz")
    monkeypatch.setattr(cls, "tgz_md5", _md5(body))
    return data, "/cifar-10-python.tar.gz"


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_pull_downloads_checks_and_extracts_real_formats(server, monkeypatch, tmp_path):
    root = tmp_path / "raw"
    mnist = serve_mnist(server, monkeypatch, tmp_path)
    serve_cifar10(server, monkeypatch, tmp_path)
    sources = {name: (get_spec(name).fetch, root) for name in ("kmnist", "cifar10")}

    done, errors = pull(sources)

    assert errors == [] and done == {"cifar10": "downloaded", "kmnist": "downloaded"}
    files = _files(root)
    # archives are extracted and removed; nothing is left in the staging folder
    assert [f for f in files if f.startswith("KMNIST")] == [
        f"KMNIST/raw/{n}"
        for n in (
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte",
        )
    ]
    assert "cifar-10-batches-py/data_batch_5" in files and "cifar-10-batches-py/batches.meta" in files
    assert not any(f.endswith((".gz", ".tar.gz")) for f in files) and not (root / STAGING).exists()
    # torchvision's readers read what was pulled
    bundle = build_dataset(DataConfig(name="kmnist", root=str(root), val_fraction=0.25), seed=0)
    assert bundle.sizes() == {"train": 30, "val": 10, "test": 10}
    assert sorted(int(bundle.test[i][1]) for i in range(10)) == sorted(mnist["test_y"].tolist())
    assert len(build_dataset(DataConfig(name="cifar10", root=str(root), val_fraction=0.5), seed=0).test) == 10
    # a second pull finds everything in place and downloads nothing
    server.files.clear()
    assert pull(sources) == ({"cifar10": "present", "kmnist": "present"}, [])


def test_checksum_mismatch_deletes_the_partial_file_and_says_so(server, monkeypatch, tmp_path):
    root = tmp_path / "raw"
    serve_mnist(server, monkeypatch, tmp_path, corrupt="t10k-images-idx3-ubyte")

    done, errors = pull({"kmnist": (get_spec("kmnist").fetch, root)})

    assert done == {}
    assert len(errors) == 1 and "\n" not in errors[0]
    assert errors[0].startswith("dataset 'kmnist' missing: checksum mismatch for t10k-images-idx3-ubyte.gz")
    assert "deleted the partial file" in errors[0] and "KMNIST/raw/" in errors[0] and str(root) in errors[0]
    assert _files(root) == []  # not even the files that did download: nothing half-written


def test_server_dying_mid_transfer_leaves_nothing(server, monkeypatch, tmp_path):
    root = tmp_path / "raw"
    serve_mnist(server, monkeypatch, tmp_path)
    _, path = serve_cifar10(server, monkeypatch, tmp_path)
    server.mode[path] = "cut"

    done, errors = pull({name: (get_spec(name).fetch, root) for name in ("kmnist", "cifar10")})

    assert done == {"kmnist": "downloaded"}  # the other dataset is complete and kept
    assert len(errors) == 1 and errors[0].startswith("dataset 'cifar10' missing: ")
    assert "cifar-10-python.tar.gz" in errors[0] and "deleted the partial file" in errors[0]
    assert not any(f.startswith("cifar") for f in _files(root)) and not (root / STAGING).exists()


def test_a_stalled_server_times_out(server, monkeypatch, tmp_path):
    monkeypatch.setenv(TIMEOUT_ENV, "0.5")
    root = tmp_path / "raw"
    _, path = serve_cifar10(server, monkeypatch, tmp_path)
    server.mode[path] = "stall"
    start = time.perf_counter()
    done, errors = pull({"cifar10": (get_spec("cifar10").fetch, root)})
    assert time.perf_counter() - start < 3  # the socket timeout, not the server, ends it
    assert done == {} and "timed out" in errors[0].lower() and _files(root) == []


def test_builtin_and_local_datasets_are_not_downloaded(tmp_path):
    missing = tmp_path / "images"
    done, errors = pull({"imagefolder": (get_spec("imagefolder").fetch, missing)})
    assert done == {} and errors[0].startswith("dataset 'imagefolder' is local data, not downloaded: put class")
    (missing / "cat").mkdir(parents=True)
    assert pull({"imagefolder": (get_spec("imagefolder").fetch, missing)}) == ({"imagefolder": "local"}, [])
    assert get_spec("digits").fetch.kind == "builtin"


def test_data_stage_offline_is_one_line_per_missing_dataset(monkeypatch, tmp_path, capsys):
    """The `paper` profile with every mirror unreachable: exit 2 in seconds, one line per dataset."""
    from pipelines import data as stage

    monkeypatch.chdir(tmp_path)
    for cls in (tvd.MNIST, tvd.FashionMNIST, tvd.KMNIST):
        monkeypatch.setattr(cls, "mirrors", [REFUSED])
    monkeypatch.setattr(cifar_mod._PresenceCheckedCIFAR10, "url", REFUSED + "cifar-10-python.tar.gz")
    start = time.perf_counter()
    with pytest.raises(SystemExit) as info:
        stage.main(["paper"])
    assert info.value.code == 2 and time.perf_counter() - start < 5
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split("'")[1] for line in lines[:-1]] == ["cifar10", "fashion_mnist", "kmnist"]
    for line in lines[:-1]:
        assert line.startswith("error: dataset ") and "under 'data/raw'" in line and "dvc pull data" in line
    assert "KMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte" in lines[-2]
    assert lines[-1].startswith("error: 3 of 3 datasets of profile 'paper' missing")
    assert list(tmp_path.iterdir()) == []  # no manifest, no partial file, not even an empty data/raw


def _run(*cmd: str, cwd: Path) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_dvc_push_and_pull_share_the_data_stage_output(server, monkeypatch, tmp_path):
    """The real `data` stage declaration in a fresh git + DVC repo: its output is cached, pushed to a
    local-directory remote, deleted, and pulled back byte for byte (what an offline node does)."""
    from pipelines import data as stage

    dvc = str(Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "dvc")
    dvc = dvc if Path(dvc).is_file() else "dvc"
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    repo.mkdir()
    _run("git", "init", "-q", cwd=repo)
    _run(dvc, "init", "-q", cwd=repo)
    declared = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["data"]
    (repo / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {"data": {"cmd": declared["cmd"], "outs": declared["outs"]}}})
    )
    serve_mnist(server, monkeypatch, tmp_path)
    done, errors = pull({"kmnist": (get_spec("kmnist").fetch, repo / "data" / "raw")})
    assert errors == [] and done == {"kmnist": "downloaded"}
    monkeypatch.chdir(repo)
    assert stage.MANIFEST  # the stage's own manifest name is part of the output
    before = {f: (repo / "data/raw" / f).read_bytes() for f in _files(repo / "data/raw")}

    _run(dvc, "commit", "-f", "-q", "data", cwd=repo)
    _run(dvc, "remote", "add", "-d", "store", str(remote), cwd=repo)
    _run(dvc, "push", "-q", cwd=repo)
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    _run(dvc, "pull", "-q", "data", cwd=repo)

    assert {f: (repo / "data/raw" / f).read_bytes() for f in _files(repo / "data/raw")} == before
    assert len(before) == 4


def test_a_dataset_failing_at_once_leaves_the_others_staging_alone(tmp_path, monkeypatch):
    """Datasets pulled in parallel share the staging folder: one that fails at once must not remove it while
    another is still creating its own folder there (a CI run lost the whole data stage to that race). The
    race's window, between creating the shared folder and the dataset's folder in it, is widened to 0.3 s:
    every dataset still gets its one-line error, and no staging folder is left behind."""
    from benchmark.cell.data.download import Resource, Source

    real_mkdir = Path.mkdir

    def slow_after_creating_staging(self, *args, **kwargs):
        created = not self.exists()
        real_mkdir(self, *args, **kwargs)
        if self.name == STAGING and created:
            time.sleep(0.3)  # the thread that made the shared folder pauses before making its own in it

    def source(i: int) -> Source:
        resource = Resource((REFUSED + f"d{i}.gz",), f"d{i}.gz", "0" * 32, folder=f"D{i}/raw")
        return Source("download", where=f"D{i}/raw/d{i}.gz", resources=lambda: [resource])

    monkeypatch.setattr(Path, "mkdir", slow_after_creating_staging)
    root = tmp_path / "raw"
    done, errors = pull({f"d{i}": (source(i), root) for i in range(4)})
    assert done == {} and len(errors) == 4, errors
    assert all(e.startswith(f"dataset 'd{i}' missing: cannot download d{i}.gz") for i, e in enumerate(errors))
    assert not (root / STAGING).exists()


def test_an_archive_that_does_not_unpack_is_a_one_line_error(server, tmp_path):
    """A mirror serving an archive whose MD5 matches but that does not unpack (a wrong checksum table, a
    truncated upload): that dataset's one line, the others pulled, nothing of it left."""
    from benchmark.cell.data.download import Resource, Source

    broken, good = b"not a tar archive", b"fine"
    server.files |= {"/broken.tar.gz": broken, "/good.bin": good}
    tar = Resource((server.url + "broken.tar.gz",), "broken.tar.gz", _md5(broken), "B", extract=True)
    plain = Resource((server.url + "good.bin",), "good.bin", _md5(good), "G")
    sources = {"broken": Source("download", "B/", lambda: [tar]), "good": Source("download", "G/", lambda: [plain])}
    root = tmp_path / "raw"
    done, errors = pull({name: (src, root) for name, src in sources.items()})
    assert done == {"good": "downloaded"} and (root / "G" / "good.bin").read_bytes() == good
    assert len(errors) == 1 and "\n" not in errors[0], errors
    assert errors[0].startswith("dataset 'broken' not pulled: ReadError: ") and "partial downloads removed" in errors[0]
    assert _files(root) == ["G/good.bin"] and not (root / STAGING).exists()
