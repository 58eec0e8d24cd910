"""Places and runs jobs through an executor: this machine's slots (GPUs x jobs-per-GPU, or CPU slots), or a Ray cluster."""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Generic, Protocol, Sequence, TypeVar

from grader.errors import GraderError
from grader.gpus import inventory
from grader.result import Slot

J = TypeVar("J")
R = TypeVar("R")


class SlotError(GraderError, ValueError):
    """A --gpus/--per-gpu/--jobs combination that names no usable slot."""


def detect_gpus() -> list[str]:
    """The GPU indices nvidia-smi lists, or [] when there is no nvidia-smi or it finds no GPU.

    Each is mapped to its device file (grader.gpus.inventory); GpuError when one cannot be.
    """
    return [str(gpu.index) for gpu in inventory()]


def plan_slots(gpus: str, *, per_gpu: int = 1, jobs: int = 1, available: Sequence[str] | None = None) -> list[Slot]:
    """The slots to fill: each GPU `per_gpu` times, or `jobs` CPU slots when there are no GPUs.

    `gpus` is "auto" (what nvidia-smi lists), "none", or a comma list of indices such as "0,1".
    """
    if per_gpu < 1 or jobs < 1:
        raise SlotError("--per-gpu and --jobs must be at least 1")
    if gpus == "none":
        chosen: list[str] = []
    elif gpus == "auto":
        chosen = list(detect_gpus() if available is None else available)
    else:
        chosen = [g.strip() for g in gpus.split(",") if g.strip()]
        if not all(g.isdigit() for g in chosen) or not chosen:
            raise SlotError(f"--gpus must be auto, none or a comma list of GPU indices, not {gpus!r}")
        known = detect_gpus() if available is None else list(available)
        missing = [g for g in chosen if g not in known]
        if missing:
            raise SlotError(f"GPU {', '.join(missing)} not found (nvidia-smi lists: {', '.join(known) or 'none'})")
    if chosen:
        return [Slot("gpu", i, gpu) for i, gpu in enumerate(g for g in chosen for _ in range(per_gpu))]
    return [Slot("cpu", i) for i in range(jobs)]


def threads_per_slot(slots: int, cores: int | None = None) -> int:
    """Math-library threads each job gets: its share of the cores, at least one."""
    return max(1, (cores or os.cpu_count() or 1) // max(1, slots))


@dataclass(frozen=True)
class Placement:
    """Where the executor will run the jobs, decided before any runs: what every job is told, and one line for people."""

    where: str  # e.g. "2 slot(s): cpu 0, cpu 1", or the Ray cluster and what each job asks of it
    threads: int  # math-library threads each job gets (its share of the cores, or the CPUs it asked the cluster for)
    jobs_per_gpu: int = 1  # each job on a GPU gets 1/jobs_per_gpu of its memory


class Executor(Protocol[J, R]):
    """Places jobs and runs work(job, slot) for each, calling on_done(job, result) as each finishes, in the caller's
    process. A job whose run is lost (its worker died, or the grader failed there) gets on_lost(job, why, details)
    as its result instead: why is one line, details the remote traceback or None."""

    def place(self) -> Placement: ...

    def run(self, jobs: Sequence[J], work: Callable[[J, Slot], R], on_done: Callable[[J, R], None],
            on_lost: Callable[[J, str, str | None], R] | None = None) -> None: ...


@dataclass
class LocalExecutor(Generic[J, R]):
    """One thread per slot on this machine; each job holds its slot for as long as it runs."""

    slots: Sequence[Slot]
    jobs_per_gpu: int = 1

    @classmethod
    def on_this_machine(cls, gpus: str = "auto", *, per_gpu: int = 1, jobs: int = 1) -> LocalExecutor[J, R]:
        """The slots --gpus/--per-gpu/--jobs name on this machine (plan_slots); SlotError when they name none."""
        return cls(plan_slots(gpus, per_gpu=per_gpu, jobs=jobs), per_gpu)

    def place(self) -> Placement:
        where = ", ".join(f"{s.kind} {s.gpu if s.gpu is not None else s.index}" for s in self.slots)
        return Placement(f"{len(self.slots)} slot(s): {where}", threads_per_slot(len(self.slots)), self.jobs_per_gpu)

    def run(self, jobs: Sequence[J], work: Callable[[J, Slot], R], on_done: Callable[[J, R], None],
            on_lost: Callable[[J, str, str | None], R] | None = None) -> None:
        """Runs here, so no job is ever lost to a dead worker: on_lost is never called."""
        free: queue.Queue[Slot] = queue.Queue()
        for slot in self.slots:
            free.put(slot)
        lock = threading.Lock()
        stop = threading.Event()  # set by the first failure or interrupt: from then on no queued job starts

        def one(job: J) -> None:
            if stop.is_set():
                return
            try:
                slot = free.get()
                try:
                    result = work(job, slot)
                finally:
                    free.put(slot)
                with lock:
                    on_done(job, result)
            except BaseException:  # set here, before the caller hears of it: this slot's thread takes no next job
                stop.set()
                raise

        pool = ThreadPoolExecutor(max_workers=len(self.slots), thread_name_prefix="grader-slot")
        try:
            for future in [pool.submit(one, job) for job in jobs]:
                future.result()
        finally:  # normally all are done; on a failure or an interrupt the queued jobs never start
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
