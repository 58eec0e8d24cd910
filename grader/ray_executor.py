"""Runs a batch's jobs as Ray tasks across a cluster (`grader grade --executor ray`): placement, shipping, lost workers.

Each submission is one Ray task asking for ``cpus_per_job`` CPUs and, when the cluster has GPUs,
1/``per_gpu`` of one. On its worker the task runs the same sandbox and time box as a job run
here (grader.runner, through the work function the driver passes), in a private folder of that
node's temp dir, then returns its result and the files the grader keeps. Nothing relies on a
shared file system: the staged submission and the train and test images travel through Ray's
object store (the images once per batch, landed once per node and reused), and the job's files
travel back; the sandbox's own tree never does (grader.shipping). The driver writes each
result as it arrives (grade.py's on_done), so a killed batch resumes as a local one does. A job
whose worker or node dies is given on_lost's result (a sandbox_error) and the batch goes on.

Every node needs the same grader version (checked per job), its Python packages, the sandbox's
tools (bubblewrap, setpriv) and root, as a local batch does; none needs the data.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from grader import __version__
from grader.errors import GraderError
from grader.harvest import remove_tree
from grader.result import Slot
from grader.runner import Graded, Job, reset_layout
from grader.scheduler import Placement, SlotError
from grader.session import Layout
from grader.shipping import Tree, pack, pack_file, unpack
from grader.staging import InvalidSubmissionError, stage
from grader.text import one_line

_COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours the remote traceback's header
SCRATCH = "grader-ray"  # on each node: <tempdir>/grader-ray-<uid>/<node id>/{data,jobs}
SANDBOX_TREES = frozenset({"work", "eval"})  # what a job's sandboxes wrote: read through harvest there, never shipped


class RayUnavailableError(GraderError, RuntimeError):
    """Ray is not installed, or the cluster cannot be reached; one line."""


@dataclass(frozen=True)
class Shipment:
    """One job as it travels to a worker: the job (its paths still the driver's), the staged submission, the data."""

    job: Job
    staged: Tree
    queued_wall: float  # time.time() when the driver queued it (each machine's monotonic clock is its own)
    train: Any  # ObjectRef of the train split's Tree, shared by the batch
    test_images: Any  # ObjectRef of the test images' Tree
    position: int  # the job's place in the batch (its slot index)
    version: str = __version__


@dataclass(frozen=True)
class Returned:
    """What a worker sends back: the graded result, and the job's files (everything but its sandboxes' trees)."""

    graded: Graded
    files: Tree


@dataclass
class RayExecutor:
    """Places each job on a Ray cluster by resources and runs it there (see the module docstring)."""

    address: str = "auto"
    gpus: str = "auto"  # auto: a GPU share per job when the cluster has GPUs; none: CPUs only
    per_gpu: int = 1
    cpus_per_job: int = 1
    scratch: str | None = None  # the temp dir on every node (default: each node's own)
    _uses_gpu: bool = field(default=False, init=False)
    _connected: bool = field(default=False, init=False)

    def place(self) -> Placement:
        ray = _ray()
        if self.per_gpu < 1 or self.cpus_per_job < 1:
            raise SlotError("--per-gpu and --cpus-per-job must be at least 1")
        if self.gpus not in ("auto", "none"):
            raise SlotError(f"with --executor ray, Ray chooses each job's GPU: --gpus must be auto or none, "
                            f"not {self.gpus!r}")
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, logging_level="ERROR", log_to_driver=False,
                         configure_logging=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise RayUnavailableError(f"cannot reach the Ray cluster at {self.address}: "
                                          f"{one_line(str(exc), 300)}") from None
            self._connected = True
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        most_cpus = max((n.get("Resources", {}).get("CPU", 0) for n in nodes), default=0)
        if most_cpus < self.cpus_per_job:
            self.close()
            raise SlotError(f"no node of the Ray cluster has {self.cpus_per_job} CPU(s) (the most is {most_cpus:g})")
        total = ray.cluster_resources()
        self._uses_gpu = self.gpus == "auto" and total.get("GPU", 0) > 0
        share = f" and 1/{self.per_gpu} of a GPU" if self._uses_gpu else ""
        where = (f"the Ray cluster at {self.address} ({len(nodes)} node(s), {total.get('CPU', 0):g} CPU(s), "
                 f"{total.get('GPU', 0):g} GPU(s)); each job asks for {self.cpus_per_job} CPU(s){share}")
        return Placement(where, self.cpus_per_job, self.per_gpu if self._uses_gpu else 1)

    def close(self) -> None:
        """Disconnect from the cluster if this executor connected (the cluster itself keeps running)."""
        if self._connected:
            _ray().shutdown()
            self._connected = False

    def run(self, jobs: Sequence[Job], work: Callable[[Job, Slot], Graded], on_done: Callable[[Job, Graded], None],
            on_lost: Callable[[Job, str, str | None], Graded] | None = None) -> None:
        ray = _ray()
        if not ray.is_initialized():
            self.place()
        remote = ray.remote(_grade_on_worker).options(
            num_cpus=self.cpus_per_job, num_gpus=(1 / self.per_gpu) if self._uses_gpu else 0, max_retries=0)
        shared: dict[Path, Any] = {}

        def data_ref(path: Path, packer: Callable[[Path], Tree]) -> Any:
            if path not in shared:
                shared[path] = ray.put(packer(path))
            return shared[path]

        pending: dict[Any, Job] = {}
        try:
            for position, job in enumerate(jobs):
                staged = _staged_tree(job)
                if staged is None:  # refused at staging: graded here, where no sandbox is needed to say why
                    on_done(job, work(job, Slot("cpu", position)))
                    continue
                queued_wall = time.time() - (time.monotonic() - job.queued_at)
                shipment = Shipment(job, staged, queued_wall, data_ref(job.settings.data_dir, pack),
                                    data_ref(job.test.images, pack_file), position)
                pending[remote.remote(shipment, work, self.scratch)] = job
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                job = pending.pop(ready[0])
                on_done(job, self._landed(ray, ready[0], job, on_lost))
        except BaseException:  # interrupted, or on_done failed: the jobs still out are stopped, their workers killed
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            self.close()

    @staticmethod
    def _landed(ray: Any, ref: Any, job: Job, on_lost: Callable[[Job, str, str | None], Graded] | None) -> Graded:
        """The job's Graded with its files landed in the driver's layout, or on_lost's result when the run was lost."""
        reset_layout(job.layout)  # what an earlier attempt left here goes, as before a local run
        try:
            returned: Returned = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the grader's own code failed on the worker: a bug, kept in full
            if on_lost is None:
                raise
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            return on_lost(job, f"grader error on the Ray worker: {type(cause).__name__}: {cause}",
                           _COLOUR.sub("", str(exc)))
        except ray.exceptions.RayError as exc:  # the worker, its node or the object store went away
            if on_lost is None:
                raise
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return on_lost(job, f"the Ray worker running this job was lost ({type(exc).__name__}): {first}", None)
        unpack(returned.files, job.layout.root)
        graded = returned.graded
        if graded.evidence is not None:
            graded = replace(graded, evidence=replace(graded.evidence, output_dir=job.layout.collected_outputs))
        return graded


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailableError("--executor ray needs Ray on this machine and every node: "
                                  "pip install 'cnn-tuning-grader[ray]'") from None
    return ray


def _staged_tree(job: Job) -> Tree | None:
    """The submission as the driver stages it (regular files only, within the staging limits); None when it cannot
    be staged (the job is then graded on the driver, which records why, as a local run does)."""
    folder = Path(tempfile.mkdtemp(prefix="grader-ship-"))
    try:
        stage(job.submission, folder / "staged")
        return pack(folder / "staged")
    except (InvalidSubmissionError, OSError):
        return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- on the worker


def _grade_on_worker(shipment: Shipment, work: Callable[[Job, Slot], Graded], scratch: str | None) -> Returned:
    """Land the shipment in this node's scratch folder, run work on it, and pack what the driver keeps."""
    import ray

    from grader.selfcheck import check_dir

    context = ray.get_runtime_context()
    node = context.get_node_id()
    gpus = context.get_accelerator_ids().get("GPU", [])
    slot = Slot("gpu", shipment.position, str(gpus[0]), node) if gpus else Slot("cpu", shipment.position, None, node)
    job = shipment.job
    if shipment.version != __version__:
        raise GraderError(f"this node runs grader {__version__}, the driver {shipment.version}: install the same one")
    base = check_dir(Path(scratch) if scratch else None, name=SCRATCH) / node[:16]
    base.mkdir(mode=0o711, exist_ok=True)
    folder = base / "jobs" / uuid.uuid4().hex
    try:
        source = folder / "submission"
        unpack(shipment.staged, source)
        lone = job.submission.kind in ("notebook", "script")
        submission = replace(job.submission, source=source / shipment.staged.files[0][0] if lone else source,
                             kind=job.submission.kind if lone else "dir")
        queued_at = time.monotonic() - max(0.0, time.time() - shipment.queued_wall)
        train = _landed_once(base / "data", ray.get(shipment.train))
        images = _landed_once(base / "data", ray.get(shipment.test_images)) / job.test.images.name
        local = replace(job, submission=submission, layout=Layout(folder / job.submission.student_id),
                        settings=replace(job.settings, data_dir=train), test=replace(job.test, images=images),
                        queued_at=queued_at)
        graded = work(local, slot)
        return Returned(graded, pack(local.layout.root, skip=SANDBOX_TREES))
    finally:
        remove_tree(folder)


def _landed_once(data: Path, tree: Tree) -> Path:
    """The folder under data holding tree's files, landed by the first job on this node that needs it."""
    final = data / tree.digest()
    if final.is_dir():
        return final
    data.mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp = data / f".{final.name}.{uuid.uuid4().hex}"
    unpack(tree, tmp)
    for path in (tmp, *tmp.rglob("*")):  # read inside the sandbox by an unprivileged uid
        os.chmod(path, 0o755 if path.is_dir() else 0o644, follow_symlinks=False)
    try:
        os.rename(tmp, final)
    except OSError:  # another job on this node landed it first
        remove_tree(tmp)
    return final
