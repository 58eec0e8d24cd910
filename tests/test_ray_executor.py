"""Tests for grading across machines: RayExecutor on a local two-node Ray cluster (the ray extra)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from conftest import ROOT
from processes import batch_processes
from rich.console import Console

from grader.result import read_result
from grader.scheduler import SlotError

# ---------------------------------------------------------------- RayExecutor on a local two-node cluster

# Read by Ray when it is imported: a local cluster, no token between the driver and its nodes.
os.environ.update(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", RAY_AUTH_MODE="disabled")
ray = pytest.importorskip("ray", reason="the ray extra is not installed")
from ray.cluster_utils import Cluster  # noqa: E402

from grader import grade  # noqa: E402
from grader.ray_executor import RayExecutor  # noqa: E402

TRIVIAL = "print('trivial submission')\n"
SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(600)\n"


@contextlib.contextmanager
def local_cluster(**head: int) -> Iterator[Cluster]:
    """A Ray cluster on loopback whose head has the given resources, in a short temp dir (Ray's socket paths live
    under it); disconnected and shut down by its handle, never `ray stop`."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    made = None
    try:
        made = Cluster(initialize_head=True, connect=False,
                       head_node_args={**head, "node_ip_address": "127.0.0.1", "temp_dir": temp,
                                       "include_dashboard": False})
        yield made
    finally:
        if ray.is_initialized():
            ray.shutdown()
        if made is not None:
            made.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[Cluster, list]]:
    """A head that runs no job (0 CPUs) and two worker nodes of one CPU each."""
    with local_cluster(num_cpus=0) as made:
        nodes = [made.add_node(num_cpus=1, node_ip_address="127.0.0.1") for _ in range(2)]
        made.wait_for_nodes()
        yield made, nodes


def rubric(path: Path) -> Path:
    doc = json.loads((ROOT / "grader" / "rubrics" / "quick.json").read_text())
    doc.update(time_limit_s=120)
    path.write_text(json.dumps(doc))
    return path


def batch(folder: Path, scripts: dict[str, str]) -> Path:
    for student, script in scripts.items():
        (folder / student).mkdir(parents=True)
        (folder / student / "tuning.py").write_text(script)
    return folder


@pytest.mark.slow
@pytest.mark.sandbox
def test_a_class_graded_on_two_ray_nodes_lands_every_result_on_the_driver_and_resumes(
        tmp_path: Path, cluster: tuple[Cluster, list]) -> None:
    made, nodes = cluster
    subs = batch(tmp_path / "subs", {f"s{i}": TRIVIAL for i in range(4)})
    (subs / "broken.zip").write_bytes(b"not a zip")
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    scratch.mkdir()
    console = io.StringIO()
    summary = grade.main(submissions=[subs], rubric=rubric(tmp_path / "rubric.json"), out=out,
                         console=Console(file=console, width=200),
                         executor=RayExecutor(made.address, "auto", 1, 1, str(scratch)))
    text = console.getvalue()
    assert (f"grading 5 of 5 submissions (0 unchanged) on the Ray cluster at {made.address} (3 node(s), 2 CPU(s), "
            f"0 GPU(s)); each job asks for 1 CPU(s); profile quick") in text
    assert summary.statuses == {"broken": "invalid_submission", **{f"s{i}": "completed" for i in range(4)}}
    used = set()
    for i in range(4):
        result = read_result(out / f"s{i}" / "result.json")
        assert result is not None and result.message == "ran to the end"
        assert result.slot is not None and result.slot.kind == "cpu" and result.slot.node is not None
        assert result.isolation is not None and result.isolation.method == "bwrap"
        assert (out / f"s{i}" / result.logs["stdout"]).read_text() == "trivial submission\n"
        assert (out / f"s{i}" / "feedback.html").is_file()
        assert not (out / f"s{i}" / "work").exists()  # the sandbox's tree stays on the worker
        used.add(result.slot.node)
    assert used == {node.node_id for node in nodes}  # both workers graded, the head none
    assert read_result(out / "broken" / "result.json").slot.node is None  # refused at staging, on the driver
    assert [p.name for p in scratch.glob("grader-ray-*/*/jobs/*")] == []  # each worker cleared its job folders
    again = grade.main(submissions=[subs], rubric=rubric(tmp_path / "rubric.json"), out=out,
                       console=Console(file=io.StringIO()), executor=RayExecutor(made.address, "auto", 1, 1,
                                                                                  str(scratch)))
    assert (again.graded, sorted(again.skipped)) == ((), ["broken", "s0", "s1", "s2", "s3"])


@pytest.mark.slow
@pytest.mark.sandbox
def test_a_node_lost_mid_job_gives_that_job_a_sandbox_error_and_the_batch_goes_on(
        tmp_path: Path, cluster: tuple[Cluster, list]) -> None:
    made, nodes = cluster
    subs = batch(tmp_path / "subs", {"sleeper": SLEEPER, "t1": TRIVIAL, "t2": TRIVIAL})
    out, scratch = tmp_path / "out", tmp_path / "scratch"
    scratch.mkdir()
    since = time.time()
    lost: list[str] = []

    def lose_the_sleepers_node() -> None:  # its job folder names its node: <scratch>/grader-ray-<uid>/<node>/jobs/..
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not lost:
            for folder in scratch.glob("grader-ray-*/*/jobs/*/sleeper/work"):
                node = next(n for n in nodes if n.node_id.startswith(folder.parents[3].name))
                time.sleep(2)  # let the sleeper's sandbox start
                made.remove_node(node)
                lost.append(node.node_id)
                break
            time.sleep(0.2)

    killer = threading.Thread(target=lose_the_sleepers_node)
    killer.start()
    try:
        summary = grade.main(submissions=[subs], rubric=rubric(tmp_path / "rubric.json"), out=out,
                             console=Console(file=io.StringIO()),
                             executor=RayExecutor(made.address, "auto", 1, 1, str(scratch)))
    finally:
        killer.join()
    assert lost, "the sleeper's job never started on a worker"
    assert summary.statuses == {"sleeper": "sandbox_error", "t1": "completed", "t2": "completed"}
    result = read_result(out / "sleeper" / "result.json")
    assert result is not None and result.message.startswith(
        "the Ray worker running this job was lost (NodeDiedError): Task failed because the node it was running on is "
        "dead or unavailable.")
    assert summary.sandbox_errors == ("sleeper",)
    time.sleep(2)
    assert batch_processes(scratch, since)[0] == []  # the sleeper's sandbox died with its worker
    nodes.remove(next(n for n in nodes if n.node_id == lost[0]))
    nodes.append(made.add_node(num_cpus=1, node_ip_address="127.0.0.1"))  # for any later test of the module
    made.wait_for_nodes()


def test_with_ray_the_cluster_chooses_each_gpu(cluster: tuple[Cluster, list]) -> None:
    made, _ = cluster
    with pytest.raises(SlotError) as caught:
        RayExecutor(made.address, "0,1").place()
    assert str(caught.value) == "with --executor ray, Ray chooses each job's GPU: --gpus must be auto or none, not '0,1'"
    with pytest.raises(SlotError) as caught:
        RayExecutor(made.address, "auto", 1, 2).place()
    assert str(caught.value) == "no node of the Ray cluster has 2 CPU(s) (the most is 1)"
    assert not ray.is_initialized()  # the executor disconnected again


@pytest.mark.slow
@pytest.mark.sandbox
def test_on_a_cluster_with_gpus_each_job_asks_for_its_share_and_a_node_whose_gpu_is_not_there_is_a_sandbox_error(
        tmp_path: Path) -> None:
    subs = batch(tmp_path / "subs", {"s0": TRIVIAL})
    (tmp_path / "scratch").mkdir()
    console = io.StringIO()
    with local_cluster(num_cpus=1, num_gpus=1) as made:  # a node that tells Ray it has a GPU this machine has not
        address = made.address
        grade.main(submissions=[subs], rubric=rubric(tmp_path / "rubric.json"), out=tmp_path / "out",
                   console=Console(file=console, width=200),
                   executor=RayExecutor(address, "auto", 2, 1, str(tmp_path / "scratch")))
    assert (f"on the Ray cluster at {address} (1 node(s), 1 CPU(s), 1 GPU(s)); each job asks for 1 CPU(s) "
            f"and 1/2 of a GPU; profile quick") in console.getvalue()
    result = read_result(tmp_path / "out" / "s0" / "result.json")
    assert result is not None and result.slot is not None
    assert (result.slot.kind, result.slot.gpu, result.status) == ("gpu", "0", "sandbox_error")
    assert result.message == "the sandbox could not start: GPU 0 not found (nvidia-smi lists: none)"
