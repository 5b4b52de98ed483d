"""Per-image work on a real Dask cluster: the local pool's bytes, whatever happens to workers.

A LocalCluster of 2 worker processes builds the sample's canonical json, masks and an augment
variant byte-identical to the local executor; workers that see the data under another path get
mapped paths; a worker killed mid-stage is replaced and the outputs do not change; an input that
kills every worker is named; other library versions or code on a worker are refused; and
``dvc repro`` runs against ``dask scheduler`` and ``dask worker`` as separate processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask
import pytest
import yaml
from distributed import Client, LocalCluster, get_worker
from distributed.security import Security
from tqdm import tqdm

from benchmarks.scale import generate_coco
from pipeline.execution import dask_executor
from pipeline.execution.dask_executor import (
    _MAX_ITEMS,
    DaskExecutor,
    _chunks,
    _Sizer,
    environment,
    mismatch,
    worker_path,
)
from pipeline.files.contracts import CANONICAL_PATH, CLASSES_PATH, MASKS_DIR
from pipeline.files.errors import DatasetError
from pipeline.files.params import ExecutorParams, parse_params
from pipeline.stages import augment, masks, validate
from pipeline.stages.masks import MaskTask
from tests.conftest import ROOT, copy_repo, python_exe, run_cli
from tests.test_pipeline_dvc import output_digests, sh

VARIANT = "geometric"  # params.yaml's variant with rotate/scale, elastic, fog, blur: 2 copies


def digests(root: Path, *tops: str) -> dict[str, str]:
    """sha256 of every file under ``root/<top>``, by path relative to ``root``."""
    out = {}
    for top in tops:
        under = root / top
        for path in [under] if under.is_file() else sorted(under.rglob("*")):
            if path.is_file() and "sample" not in path.parts:
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def stage_params(sample: Path, executor: dict[str, Any], workers: int = 2, **dataset: Any):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    variants = {VARIANT: raw["augment"]["variants"][VARIANT]}
    return parse_params(
        {
            "workers": workers,
            "executor": executor,
            "dataset": {
                "annotations": str(sample / "annotations.json"),
                "images": str(sample / "images"),
                **dataset,
            },
            "augment": {"variants": variants},
        }
    )


def run_stages(root: Path, params: Any) -> dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    validate.run(params, root)
    masks.run(params, root)
    augment.run(params, root, VARIANT)
    return digests(root, "data", "reports")


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[LocalCluster, Client]]:
    """2 worker processes of 1 thread, as the stage's own LocalCluster has with workers: 2."""
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as lc,
        Client(lc) as client,
    ):
        yield lc, client


@pytest.fixture(scope="module")
def local_run(sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """validate, masks and the variant on the local executor: the reference bytes."""
    root = tmp_path_factory.mktemp("local")
    run_stages(root, stage_params(sample_dir, {"kind": "local"}))
    return root


# ---------------------------------------------------------------- settings and paths


def test_worker_path_is_absolute_and_mapped(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    repo = str(tmp_path)
    assert worker_path("data/masks/a.png", {}) == f"{repo}/data/masks/a.png"
    mapping = {repo: "/mnt/repo", f"{repo}/data": "/mnt/fast/data"}  # the longest prefix wins
    assert worker_path("data/masks/a.png", mapping) == "/mnt/fast/data/masks/a.png"
    assert worker_path("params.yaml", mapping) == "/mnt/repo/params.yaml"
    assert worker_path("database/x", {"data": "/mnt/d"}) == f"{repo}/database/x"  # components
    assert worker_path("data", {"data/": "s3mnt/"}) == "s3mnt"
    assert worker_path("/elsewhere/x.jpg", mapping) == "/elsewhere/x.jpg"


def test_executor_settings_are_checked() -> None:
    assert parse_params({}).executor == ExecutorParams("local", None, {})
    with pytest.raises(DatasetError, match=r"params.yaml: executor.kind: 'spark' is not one"):
        parse_params({"executor": {"kind": "spark"}})
    with pytest.raises(DatasetError, match="executor.path_map: must map local path prefixes"):
        parse_params({"executor": {"path_map": {"/data": 3}}})
    with pytest.raises(DatasetError, match=r"executor: unknown keys \['adress'\]"):
        parse_params({"executor": {"adress": "tcp://x:8786"}})


def test_executor_is_no_dvc_dependency() -> None:
    """Like `workers`, where the work runs never changes outputs: no stage re-runs for it."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        keys = [
            k
            for entry in body.get("params", [])
            for k in (entry if isinstance(entry, dict) else [entry])
        ]
        assert not [k for k in keys if k.split(".")[0] in ("executor", "workers")], name


def test_local_runs_import_no_dask() -> None:
    code = (
        "import sys; from pipeline.stages import masks, augment, validate; "
        "from pipeline.execution.executor import make_executor; "
        "from pipeline.files.params import Params; "
        "make_executor(Params()); print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('dask', 'distributed')))"
    )
    assert run_cli([python_exe(), "-c", code], cwd=ROOT).stdout.strip() == "[]"


def test_workers_are_checked_against_the_one_list() -> None:
    """The Dask check compares environment.yaml's packages (and this package's code), the
    same list the stages check and the item cache keys on."""
    from pipeline.files.environment import installed_versions

    ours = environment()
    assert {k: ours[k] for k in installed_versions()} == installed_versions()
    assert set(ours) == {*installed_versions(), "coco-folds", "coco-folds source"}


def test_version_mismatch_names_worker_and_package() -> None:
    ours = environment()
    assert mismatch(ours, dict(ours), "tcp://w:1") is None
    line = mismatch(ours, {**ours, "numpy": "1.0.0"}, "tcp://10.0.0.5:40123")
    assert line.startswith(
        f"Dask worker tcp://10.0.0.5:40123 has numpy 1.0.0, this machine {ours['numpy']}"
    )
    assert "\n" not in line
    assert "coco-folds source" in mismatch(ours, {**ours, "coco-folds source": "0" * 12}, "w")


def test_chunks_grow_to_half_a_second_of_work() -> None:
    """Dask's cost is per task: chunks start at the local pool's size, then hold ~0.5 s of
    work as measured on the workers, never fewer items than at first, at most _MAX_ITEMS, and
    leave 4 chunks per thread for the rest; a size the caller chose stays."""
    sizer = _Sizer(32, 100_000, 2, fixed=False)
    assert sizer.next(0) == 32  # nothing measured yet
    sizer.observe(32, 0.0625)  # ~2 ms per item
    assert sizer.next(256) == 256
    sizer.observe(1, 100.0)  # a slow item: never below the first size
    assert sizer.next(300) == 32
    quick = _Sizer(32, 100_000, 2, fixed=False)
    quick.observe(32, 0.0)
    assert quick.next(32) == _MAX_ITEMS
    assert quick.next(100_000 - 2_000) == 2_000 // 8  # the last items: every thread gets some
    assert quick.next(100_000 - 100) == 32
    fixed = _Sizer(4, 1_000, 2, fixed=True)
    fixed.observe(4, 0.0)
    assert fixed.next(4) == 4
    assert list(_chunks(range(7), _Sizer(3, 7, 1, fixed=True))) == [
        (0, [0, 1, 2]),
        (3, [3, 4, 5]),
        (6, [6]),
    ]


def test_unreachable_scheduler_is_one_clear_error(sample_dir: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    params = stage_params(sample_dir, {"kind": "dask", "address": address})
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "2s"}),
        pytest.raises(DatasetError) as info,
    ):
        validate.run(params, tmp_path)
    message = str(info.value)
    assert message.startswith(
        f"params.yaml: executor.address: cannot reach the Dask scheduler at {address}"
    )
    assert "\n" not in message


# ---------------------------------------------------------------- same bytes


@pytest.mark.slow
def test_local_cluster_builds_the_same_bytes(
    sample_dir: Path, tmp_path: Path, local_run: Path
) -> None:
    """address: null: the masks and augment stages each start their own LocalCluster of
    `workers` (2) processes; every output file equals the local executor's, byte for byte.
    (validate's image checks on Dask: the `dvc repro` test below.)"""
    (tmp_path / "data/interim").mkdir(parents=True)
    shutil.copy(local_run / CANONICAL_PATH, tmp_path / CANONICAL_PATH)
    params = stage_params(sample_dir, {"kind": "dask", "address": None})
    masks.run(params, tmp_path)
    augment.run(params, tmp_path, VARIANT)
    found = digests(tmp_path, "data")
    assert found == digests(local_run, "data")
    kinds = {Path(p).parts[1] for p in found}
    assert kinds == {"interim", "masks", "masks.sha256", "stats", "augmented", "classes.json"}
    assert sum(1 for p in found if p.startswith(f"data/augmented/{VARIANT}/images/")) == 2 * 24


@pytest.mark.slow
def test_workers_read_through_path_map(
    sample_dir: Path, tmp_path: Path, cluster: tuple, local_run: Path
) -> None:
    """Workers that mount the data elsewhere: the stage's machine lacks the images and masks,
    the workers' mount has them; path_map sends the workers' paths."""
    mine, mount = tmp_path / "mine", tmp_path / "mount"
    for rel in (CANONICAL_PATH, CLASSES_PATH):  # all the stage itself reads
        (mine / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(local_run / rel, mine / rel)
    shutil.copytree(sample_dir / "images", mount / "images")
    shutil.copytree(local_run / MASKS_DIR, mount / "masks")
    images = mine / "images"  # where this machine's params say the images are: absent
    executor = {
        "kind": "dask",
        "address": cluster[0].scheduler_address,
        "path_map": {
            str(images): str(mount / "images"),
            f"{mine}/{MASKS_DIR}": str(mount / "masks"),
        },
    }
    augment.run(stage_params(sample_dir, executor, images=str(images)), mine, VARIANT)
    variant = f"data/augmented/{VARIANT}"
    assert digests(mine, variant) == digests(local_run, variant)


# ---------------------------------------------------------------- failures


def _kill_on(image_id: int, task: MaskTask) -> int:
    """Work that kills its worker process on one image, as a segfault or the OOM killer does."""
    if task.image["id"] == image_id:
        os.kill(os.getpid(), signal.SIGKILL)
    return int(task.image["id"])


KILL_EVERY_WORKER = """
import sys

from pipeline.execution.cli import fail
from pipeline.execution.dask_executor import DaskExecutor
from pipeline.files.errors import DatasetError
from pipeline.stages.masks import MaskTask
from pipeline.files.params import ExecutorParams
from tests.test_dask_executor import _kill_on

if __name__ == "__main__":
    tasks = [MaskTask({"id": i, "file_name": f"b/{i}.jpg"}, []) for i in range(1, 41)]
    executor = DaskExecutor(2, ExecutorParams("dask", None, {}))
    try:
        print(list(executor.map(_kill_on, tasks, int(sys.argv[1]), "masks")))
    except DatasetError as exc:
        sys.exit(fail(str(exc)))
"""


@pytest.mark.slow
def test_input_that_kills_every_worker_is_named(tmp_path: Path, monkeypatch: Any) -> None:
    """Dask gives up (KilledWorker) on the image that kills every worker running it: the stage
    (its own LocalCluster, as with `address: null`) ends with one line naming the image, not a
    chunk or a task key, and no traceback or Dask log on its stderr."""
    script = tmp_path / "kill_every_worker.py"
    script.write_text(KILL_EVERY_WORKER)
    monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES", "1")
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)  # see _clean_malloc_env
    start = time.perf_counter()
    done = run_cli([python_exe(), str(script), "7"], cwd=ROOT, check=False)
    seconds = time.perf_counter() - start
    assert done.returncode == 1, done.stderr
    *before, last = done.stderr.strip().splitlines()
    assert last.startswith(
        "error: image id 7 (b/7.jpg): every Dask worker that ran it died (KilledWorker"
    )
    assert [line for line in before if "Dask dashboard at" not in line] == [], done.stderr
    assert seconds < 90


def _busy_worker(client: Client, prefix: str, timeout: float = 60) -> str:
    """The first worker seen running one of the stage's chunks (its tasks are ``<prefix>-``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker, keys in client.processing().items():
            if any(str(k).startswith(prefix) and "context" not in str(k) for k in keys):
                return worker
        time.sleep(0.01)
    raise AssertionError(f"no {prefix} task started within {timeout} s")


def _reruns(dask_scheduler: Any, prefix: str = "masks") -> int:
    """Tasks the scheduler had to move because their worker died (runs on the scheduler)."""
    return sum(p.suspicious for name, p in dask_scheduler.task_prefixes.items() if name == prefix)


def _generated_set(tmp_path: Path, n_images: int) -> dict[str, Any]:
    """A COCO-shaped json without image files (masks from the json sizes) and its canonical
    json, by the real validate stage, under ``tmp_path/local``."""
    generate_coco(tmp_path / "annotations.json", n_images, seed=3)
    dataset = {
        "annotations": str(tmp_path / "annotations.json"),
        "images": None,
        "check_images": False,
        "missing_images": "keep",
    }
    (tmp_path / "local").mkdir()
    validate.run(parse_params({"workers": 1, "dataset": dataset}), tmp_path / "local")
    return dataset


def _in_thread(work: Any) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, errors


@pytest.mark.slow
def test_worker_killed_mid_stage_changes_no_byte(tmp_path: Path) -> None:
    """SIGKILL a worker while it runs the masks stage's tasks: Dask reruns them on the other
    worker (the nanny starts a new one) and every output byte equals the local executor's."""
    dataset = _generated_set(tmp_path, 800)
    masks.run(parse_params({"workers": 2, "dataset": dataset}), tmp_path / "local")
    (tmp_path / "dask/data/interim").mkdir(parents=True)
    shutil.copy(tmp_path / "local" / CANONICAL_PATH, tmp_path / "dask" / CANONICAL_PATH)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as lc,
        Client(lc) as client,
    ):
        pids = client.run(os.getpid)
        executor = {"kind": "dask", "address": lc.scheduler_address}
        params = parse_params({"workers": 2, "dataset": dataset, "executor": executor})
        thread, errors = _in_thread(lambda: masks.run(params, tmp_path / "dask"))
        victim = _busy_worker(client, "masks-")
        os.kill(pids[victim], signal.SIGKILL)
        assert thread.is_alive(), "the stage ended before the kill: not mid-stage"
        thread.join(timeout=120)
        assert not thread.is_alive() and not errors, errors
        assert victim not in client.scheduler_info()["workers"]
        assert client.run_on_scheduler(_reruns) >= 1  # the victim's chunk ran again elsewhere
    tops = ("data/masks", "data/stats", CLASSES_PATH)
    assert digests(tmp_path / "dask", *tops) == digests(tmp_path / "local", *tops)


# ---------------------------------------------------------------- separate processes


def _start(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [python_exe(), "-m", "dask", *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@contextlib.contextmanager
def dask_processes(
    work: Path, workers: int = 2, pythonpath: str = ""
) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """`dask scheduler` and `dask worker` as separate processes on 127.0.0.1: the address and
    the processes (scheduler first). ``pythonpath`` comes first on the workers' path. Always
    terminated, whatever happens."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    worker_env = {**env, "PYTHONPATH": os.pathsep.join(p for p in (pythonpath, str(ROOT)) if p)}
    info = work / "scheduler.json"
    info.unlink(missing_ok=True)  # the address comes from the file this scheduler writes
    loopback = ["--host", "127.0.0.1", "--no-dashboard"]
    procs = [
        _start(
            ["scheduler", "--port", "0", "--scheduler-file", str(info), *loopback],
            work,
            env,
            work / "scheduler.log",
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        args = ["worker", address, "--nworkers", str(workers), "--nthreads", "1", *loopback]
        procs.append(_start(args, work, worker_env, work / "worker.log"))
        with Client(address, timeout=30) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address, procs
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture()
def scheduler(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "cluster").mkdir()
    with dask_processes(tmp_path / "cluster") as (address, _):
        yield address


def git_repo(root: Path, executor: dict[str, Any]) -> Path:
    copy_repo(root)
    (root / "dvc.lock").unlink(missing_ok=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["workers"], params["executor"] = 2, executor
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(["git", "init", "-q"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "copy"], root)
    return root


@pytest.mark.slow
def test_dvc_repro_on_separate_scheduler_and_workers(tmp_path: Path, scheduler: str) -> None:
    """The real `dvc repro` (validate, masks, one augment variant) against `dask scheduler` and
    `dask worker` processes started elsewhere (another working directory): the local run's
    bytes. Switching back to the local executor then leaves every stage up to date."""
    target = "augment@flip_clahe"
    local = git_repo(tmp_path / "local", {"kind": "local", "address": None, "path_map": {}})
    remote = git_repo(tmp_path / "dask", {"kind": "dask", "address": scheduler, "path_map": {}})
    sh(["dvc", "repro", target], local)
    out = sh(["dvc", "repro", target], remote)
    assert "Dask dashboard at" in out
    assert "workers run with MALLOC_TRIM_THRESHOLD_=65536" in out  # `dask worker`'s default
    assert output_digests(remote) == output_digests(local)
    assert len(list((remote / "data/masks").rglob("*.png"))) == 60
    params = yaml.safe_load((remote / "params.yaml").read_text())
    params["executor"] = {"kind": "local", "address": None, "path_map": {}}
    (remote / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "up to date" in sh(["dvc", "status", target], remote)


class _Records(logging.Handler):
    """Every record a Dask logger emits (to stderr, by default)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _slow(context: None, item: int) -> int:
    time.sleep(0.1)
    return item


@pytest.mark.slow
def test_lost_scheduler_is_one_clear_error(tmp_path: Path) -> None:
    """The scheduler dies mid-stage: one line naming it, not a hang, and no traceback from
    the client's reconnection attempts."""
    (tmp_path / "cluster").mkdir()
    with dask_processes(tmp_path / "cluster") as (address, processes):
        executor = DaskExecutor(2, ExecutorParams("dask", address, {}))
        results = executor.map(_slow, list(range(400)), None, "masks", chunk=2)
        assert next(results) == 0
        logged = _Records()
        logging.getLogger("distributed.client").addHandler(logged)
        processes[0].kill()
        start = time.perf_counter()
        try:
            with pytest.raises(DatasetError) as info:
                list(results)
        finally:
            logging.getLogger("distributed.client").removeHandler(logged)
        assert time.perf_counter() - start < 30
    message = str(info.value)
    assert message.startswith(f"lost the Dask scheduler at {address} mid-stage")
    assert "\n" not in message
    assert [r.getMessage() for r in logged.records if r.levelno >= logging.ERROR] == []


@pytest.mark.slow
def test_worker_with_other_versions_is_refused(tmp_path: Path, sample_dir: Path) -> None:
    """A worker whose numpy reports another version (its metadata comes first on its path):
    the stage refuses before any work, naming the worker and the package."""
    fake = tmp_path / "fake" / "numpy-0.0.1.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: numpy\nVersion: 0.0.1\n")
    (tmp_path / "cluster").mkdir()
    fake_first = str(tmp_path / "fake")
    with (
        dask_processes(tmp_path / "cluster", workers=1, pythonpath=fake_first) as (address, _),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        params = stage_params(sample_dir, {"kind": "dask", "address": address})
        with pytest.raises(DatasetError) as info:
            validate.run(params, tmp_path / "out")
    assert not [w for w in caught if "Mismatched versions" in str(w.message)]  # Dask's table
    message = str(info.value)
    assert (
        message.startswith("Dask worker tcp://127.0.0.1:")
        and " has numpy 0.0.1, this machine" in message
    )
    assert not (tmp_path / "out" / CANONICAL_PATH).exists()


# ---------------------------------------------------------------- submission, progress, TLS


def _same(context: None, item: int) -> int:
    return item


def _where(context: None, item: int) -> str:
    """The address of the worker that ran the item (its scheme: tcp:// or tls://)."""
    return get_worker().address


def _tasks(dask_scheduler: Any, prefix: str) -> int:
    """Tasks of one map the scheduler holds now (runs on the scheduler)."""
    return sum(1 for key in dask_scheduler.tasks if str(key).startswith(prefix))


@pytest.mark.slow
def test_submission_is_bounded_and_in_order(cluster: tuple) -> None:
    """Chunks go out in a bounded window (4 per worker thread): with a slow consumer, neither
    the items taken from the stage's generator nor the tasks on the scheduler run ahead of it,
    and results come back in input order."""
    lc, client = cluster
    pulled: list[int] = []

    def items() -> Iterator[int]:
        for i in range(300):
            pulled.append(i)
            yield i

    executor = DaskExecutor(2, ExecutorParams("dask", lc.scheduler_address, {}))
    ahead, held = [], []
    for i, value in enumerate(executor.map(_same, items(), None, "bounded", total=300, chunk=2)):
        assert value == i
        ahead.append(len(pulled) - i)
        if i % 50 == 25:
            time.sleep(0.5)  # the stage writes slowly: workers would race ahead if unbounded
            held.append(client.run_on_scheduler(_tasks, prefix="bounded-"))
    window = 2 * 4  # worker threads x chunks per thread
    assert max(ahead) <= (window + 1) * 2, max(ahead)
    assert max(held) <= window + 1, held  # the chunks in flight and the context


@pytest.mark.slow
def test_progress_counts_finished_images(cluster: tuple, monkeypatch: Any) -> None:
    """The bar (the local executor's look) counts images as their results reach the stage."""
    bars: list[tqdm] = []

    def shown(total: int, desc: str) -> tqdm:
        bars.append(tqdm(total=total, desc=desc, unit="img", file=io.StringIO(), disable=False))
        return bars[-1]

    monkeypatch.setattr(dask_executor, "progress", shown)
    executor = DaskExecutor(2, ExecutorParams("dask", cluster[0].scheduler_address, {}))
    counted = [bars[0].n for _ in executor.map(_same, range(100), None, "masks", chunk=4)]
    (bar,) = bars
    assert bar.total == bar.n == 100
    assert all(i + 1 <= n <= i + 4 for i, n in enumerate(counted)), counted  # chunk by chunk
    assert "100/100" in bar.fp.getvalue()


@pytest.fixture()
def tls_config(tmp_path: Path) -> dict[str, Any]:
    """Dask's own TLS settings (the keys of ~/.config/dask/distributed.yaml), with a
    self-signed certificate written to files, as a team would configure its cluster."""
    temporary = Security.temporary()
    ca, key = tmp_path / "ca.pem", tmp_path / "key.pem"
    ca.write_text(temporary.tls_ca_file)
    key.write_text(temporary.tls_scheduler_key)
    config: dict[str, Any] = {
        "distributed.comm.require-encryption": True,
        "distributed.comm.tls.ca-file": str(ca),
    }
    for role in ("client", "scheduler", "worker"):
        config[f"distributed.comm.tls.{role}.cert"] = str(ca)
        config[f"distributed.comm.tls.{role}.key"] = str(key)
    return config


@pytest.mark.slow
def test_tls_comes_from_dask_config(tls_config: dict[str, Any]) -> None:
    """With TLS in Dask's config, the stage's own LocalCluster and a `tls://` scheduler are
    spoken to over TLS; without it the `tls://` scheduler is one clear error."""
    with dask.config.set(tls_config):
        own = DaskExecutor(2, ExecutorParams("dask", None, {}))
        assert {a.split("://")[0] for a in own.map(_where, range(8), None, "tls")} == {"tls"}
        lc = LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0")
    with lc:
        address = lc.scheduler_address
        assert address.startswith("tls://")
        with dask.config.set(tls_config):
            remote = DaskExecutor(2, ExecutorParams("dask", address, {}))
            assert list(remote.map(_same, range(20), None, "tls", chunk=3)) == list(range(20))
        plain = DaskExecutor(2, ExecutorParams("dask", address, {}))
        with pytest.raises(DatasetError) as info:
            list(plain.map(_same, range(20), None, "tls"))
    message = str(info.value)
    assert message.startswith(
        f"params.yaml: executor.address: cannot reach the Dask scheduler at {address}"
    )
    assert "\n" not in message


def test_unreachable_scheduler_on_the_command_line(tmp_path: Path, monkeypatch: Any) -> None:
    """`python -m pipeline validate`, as dvc runs it: one line naming the address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    shutil.copytree(ROOT / "data/sample", tmp_path / "data/sample")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["executor"] = {"kind": "dask", "address": address, "path_map": {}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "2s")
    done = run_cli([python_exe(), "-m", "pipeline", "validate"], cwd=tmp_path, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"error: params.yaml: executor.address: cannot reach the Dask scheduler at {address} "
        f"(Timed out trying to connect to {address} after 2 s); start it (`dask scheduler`) or "
        "fix the address"
    ]


def _clean_malloc_env(monkeypatch: Any) -> None:
    """A Dask nanny writes its pre-spawn variables into its own process's environment, so a
    test process that started a default LocalCluster before passes MALLOC_TRIM_THRESHOLD_ on to
    every later worker; a stage process starts clean."""
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)


def _trim(context: None, item: int) -> str | None:
    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


@pytest.mark.slow
def test_own_cluster_keeps_glibc_malloc_defaults(capfd: Any, monkeypatch: Any) -> None:
    """The stage's LocalCluster starts its workers without Dask's MALLOC_TRIM_THRESHOLD_ (which
    makes every mask-sized array a fresh mmap: ~1.7x the CPU per image), so it says nothing;
    a cluster with Dask's default gets one line pointing to the docs."""
    _clean_malloc_env(monkeypatch)
    own = DaskExecutor(2, ExecutorParams("dask", None, {}))
    assert set(own.map(_trim, range(8), None, "trim")) == {None}
    assert "MALLOC_TRIM_THRESHOLD_" not in capfd.readouterr().err
