"""Run one notebook in a fresh kernel of this interpreter, saving as it goes, and say what happened.

This runs INSIDE the sandbox, as a child process of the grader::

    python -m grader.nbrun NOTEBOOK --executed OUT.ipynb --summary SUMMARY.json \\
        [--param NAME=JSON ...] [--cell-timeout S] [--startup-timeout S]

In order:

1. The notebook is read and validated, and the grader's parameters (PROFILE,
   DATASET, TIME_BUDGET_S, OUTPUT_DIR, SEED, DATA_DIR) become a new code cell tagged
   ``injected-parameters``, placed right after the first cell tagged ``parameters``
   (papermill's convention; also after any stale injected cell that an earlier
   papermill run left there, so the grader's values win), or at the top when the
   notebook has no parameters cell.
2. An IPython kernel of THIS interpreter starts (``sys.executable -m
   ipykernel_launcher``), whatever kernelspec the notebook names or is installed.
   Its cwd is the notebook's folder. HOME, JUPYTER_RUNTIME_DIR, JUPYTER_DATA_DIR,
   IPYTHONDIR and MPLCONFIGDIR are made absolute, and those not already set point
   into ``.nbrun/`` next to the executed notebook. The kernel talks to this process
   over TCP on 127.0.0.1, so the sandbox needs its loopback interface.
3. The code cells run in order. A cell that raises does not stop the run. A cell
   that runs longer than the cell timeout is interrupted (SIGINT to the kernel's
   process group), recorded as a ``CellTimeoutError``, and the run goes on with the
   next cell; if the interrupt does not free the kernel within INTERRUPT_GRACE_S,
   the remaining cells are not run (they would only queue behind the stuck one).
   A kernel that dies ends the run: later cells are not run.
4. The executed notebook is saved atomically after every cell, and every
   AUTOSAVE_INTERVAL_S while a cell that prints is running, so a run that the
   grader's time box kills still leaves what the finished cells (and the running
   one, up to its last save) printed.
5. The kernel is shut down (then its process group killed, so nothing it spawned
   outlives it) and the summary JSON is written atomically. (The grader renders the
   executed notebook's HTML page itself, outside the sandbox: grader.nbhtml.)

SIGTERM or SIGINT stops the run: the kernel is killed, the executed notebook saved,
no HTML or summary is written, and the command exits with 128 + the signal number.
Otherwise the command exits 0 whenever it wrote a summary (cell errors, timeouts and
a dead kernel are in the summary), and 2 for command-line errors (missing or invalid
notebook, malformed --param), after one line on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import keyword
import logging
import math
import os
import queue
import signal
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import ensure_async
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode

from grader.jsonio import json_path, write_json_atomic, write_text_atomic
from grader.protocol import SUMMARY_VERSION, STATUSES, CellError, RunSummary, Status  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
SKIP_TAG = "skip-execution"  # nbclient's default skip_cells_with_tag: such cells are not run
RUNTIME_DIR_NAME = ".nbrun"
AUTOSAVE_INTERVAL_S = 2.0  # how often a running cell's new output is saved
INTERRUPT_GRACE_S = 10.0  # how long an interrupted kernel has to become responsive again
TIMEOUT_ENAME = "CellTimeoutError"
DEAD_KERNEL_ENAME = "DeadKernelError"

# Variables the kernel needs pointing at writable folders -> sub-folder of .nbrun/ used when unset.
KERNEL_DIRS = {
    "HOME": "home",
    "JUPYTER_RUNTIME_DIR": "jupyter-runtime",
    "JUPYTER_DATA_DIR": "jupyter-data",
    "IPYTHONDIR": "ipython",
    "MPLCONFIGDIR": "matplotlib",
}

class NotebookNotFoundError(FileNotFoundError):
    """The notebook file does not exist."""


class InvalidNotebookError(ValueError):
    """The file cannot be read as a valid notebook."""


class ParameterError(ValueError):
    """A parameter's name is not a Python identifier, or its value is not JSON."""


class RunTerminated(InterruptedError):
    """SIGTERM or SIGINT stopped the run; the kernel was killed and the executed notebook saved."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}; the executed notebook keeps what ran")


# ---------------------------------------------------------------- reading and parameters


def read_notebook(path: str | os.PathLike[str]) -> NotebookNode:
    """The notebook at path, read as nbformat 4 and validated; errors name the file as given."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotebookNotFoundError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise InvalidNotebookError(f"{path} is not a valid notebook: it is a directory") from None
    except OSError as exc:
        raise InvalidNotebookError(f"{path} cannot be read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidNotebookError(f"{path} is not a valid notebook: not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidNotebookError(
            f"{path} is not a valid notebook: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("nbformat"), int):
        raise InvalidNotebookError(f"{path} is not a valid notebook: no nbformat version number")
    try:  # nbformat.reads would log a multi-line report of validation errors; these steps do not
        nb = nbformat.convert(nbformat.reader.reads(text), 4)
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        where = f"{json_path(exc.absolute_path)}: " if exc.absolute_path else ""
        raise InvalidNotebookError(f"{path} is not a valid notebook: {where}{_short(exc.message)}") from None
    except Exception as exc:  # nbformat's converters raise assorted errors on malformed input
        raise InvalidNotebookError(f"{path} is not a valid notebook: {_short(str(exc))}") from None
    return nb


def parameters_source(params: Mapping[str, object]) -> str:
    """The injected cell's source: one ``NAME = <python literal>`` line per parameter."""
    lines = ["# Parameters injected by the grader"]
    for name, value in params.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise ParameterError(f"parameter name {name!r} is not a Python identifier")
        problem = _json_problem(value, name)
        if problem is not None:
            raise ParameterError(f"parameter {name} is not a JSON value: {problem}")
        lines.append(f"{name} = {value!r}")
    return "\n".join(lines)


def inject_parameters(nb: NotebookNode, params: Mapping[str, object]) -> tuple[NotebookNode, bool]:
    """A copy of nb with the parameters cell injected, and whether nb had a cell tagged ``parameters``."""
    injected, _, found = _inject(nb, params)
    return injected, found


def _inject(nb: NotebookNode, params: Mapping[str, object]) -> tuple[NotebookNode, int, bool]:
    """inject_parameters, also giving the injected cell's position."""
    source = parameters_source(params)
    out = copy.deepcopy(nb)
    tagged = [i for i, cell in enumerate(out.cells) if PARAMETERS_TAG in _tags(cell)]
    position = tagged[0] + 1 if tagged else 0
    while position < len(out.cells) and INJECTED_TAG in _tags(out.cells[position]):
        position += 1  # a stale injected cell from an earlier papermill run: ours goes after it
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
    if (out.nbformat, out.nbformat_minor) < (4, 5):
        del cell["id"]  # cell ids arrived in nbformat 4.5; older notebooks must not have one
    out.cells.insert(position, cell)
    return out, position, bool(tagged)


def _json_problem(value: object, where: str) -> str | None:
    """Why value is not a JSON value (where names it), or None when it is one."""
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where} is {value!r}"
    if isinstance(value, list):
        for i, item in enumerate(value):
            problem = _json_problem(item, f"{where}[{i}]")
            if problem is not None:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the non-string key {key!r}"
            problem = _json_problem(item, f"{where}[{key!r}]")
            if problem is not None:
                return problem
        return None
    return f"{where} is a {type(value).__name__}"


def _tags(cell: NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _runs(cell: NotebookNode) -> bool:
    """Whether nbclient runs this cell: code, not blank, not tagged skip-execution."""
    return cell.cell_type == "code" and bool(cell.source.strip()) and SKIP_TAG not in _tags(cell)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _short(text: str, limit: int = 120) -> str:
    """text's first line, cut to limit characters (schema messages quote whole cells)."""
    line = _first_line(text)
    return line if len(line) <= limit else line[: limit - 3] + "..."


# ---------------------------------------------------------------- the kernel


def this_interpreter_kernel_spec() -> KernelSpec:
    """An IPython kernel run by this very interpreter, so it sees this environment's packages."""
    return KernelSpec(
        # --log-level=ERROR: the kernel's own warnings (TCP without encryption, ...) would end up quoted as the
        # last line of stderr in a crashed run's message, where the student's error belongs.
        argv=[sys.executable, "-m", "ipykernel_launcher", "--log-level=ERROR", "-f", "{connection_file}"],
        display_name=f"Python {sys.version_info.major} (nbrun)",
        language="python",
        interrupt_mode="signal",
    )


class ThisInterpreterKernelSpecManager(KernelSpecManager):
    """Resolves every kernel name to this_interpreter_kernel_spec(), ignoring installed kernelspecs."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        return this_interpreter_kernel_spec()


def kernel_environment(runtime_dir: str | os.PathLike[str], base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: base (default os.environ) with KERNEL_DIRS absolute and created, unset ones under runtime_dir."""
    env = dict(os.environ if base is None else base)
    root = Path(runtime_dir).absolute()
    for var, sub in KERNEL_DIRS.items():
        if env.get(var):
            env[var] = os.path.abspath(env[var])
            try:
                Path(env[var]).mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # the caller's choice of folder; the kernel reports what it cannot do
                log.warning("%s=%s cannot be created: %s", var, env[var], exc.strerror or exc)
        else:
            folder = root / sub
            folder.mkdir(parents=True, exist_ok=True)
            env[var] = str(folder)
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiets the debugger's frozen-modules warning
    return env


# ---------------------------------------------------------------- running


class _Execution:
    """One run of a notebook: the kernel, the cell loop, the saves and the bookkeeping."""

    def __init__(
        self,
        nb: NotebookNode,
        *,
        injected_at: int,
        executed_path: Path,
        cwd: Path,
        env: dict[str, str],
        cell_timeout_s: float | None,
        startup_timeout_s: float,
    ) -> None:
        self.nb = nb
        self.injected_at = injected_at
        self.executed_path = executed_path
        self.cwd = cwd
        self.env = env
        self.cell_timeout_s = cell_timeout_s
        self.startup_timeout_s = startup_timeout_s
        connection_file = Path(env["JUPYTER_RUNTIME_DIR"]) / f"kernel-nbrun-{uuid.uuid4()}.json"
        connection_file.parent.mkdir(parents=True, exist_ok=True)
        self.km = AsyncKernelManager(
            kernel_spec_manager=ThisInterpreterKernelSpecManager(),
            connection_file=str(connection_file),
        )
        error_on_timeout = None
        if cell_timeout_s is not None:
            evalue = f"the cell ran longer than {cell_timeout_s:g} s and was interrupted"
            error_on_timeout = {"ename": TIMEOUT_ENAME, "evalue": evalue, "traceback": []}
        self.client = NotebookClient(
            nb,
            km=self.km,
            timeout=None,
            timeout_func=lambda cell: cell_timeout_s,  # a float is fine here; the timeout trait wants an int
            startup_timeout=max(1, math.ceil(startup_timeout_s)),
            allow_errors=True,
            interrupt_on_timeout=True,
            error_on_timeout=error_on_timeout,
            record_timing=True,
            coalesce_streams=True,
            on_cell_executed=self._on_cell_executed,
        )
        self.replies: dict[int, dict[str, Any]] = {}
        self.errors: list[CellError] = []
        self.cells_executed = 0
        self.timed_out_cell: int | None = None
        self.kernel_died = False
        self.kernel_died_cell: int | None = None
        self.kernel_stuck = False
        self.running: int | None = None
        self.pgid: int | None = None
        self.signum: int | None = None
        self.stopping = False

    # -- bookkeeping

    @property
    def cells_total(self) -> int:
        return sum(1 for i, cell in enumerate(self.nb.cells) if i != self.injected_at and _runs(cell))

    def original_index(self, index: int) -> int | None:
        """The executed notebook's cell index in the original notebook; None for the injected cell."""
        if index == self.injected_at:
            return None
        return index if index < self.injected_at else index - 1

    def summary(self, parameters_cell_found: bool) -> RunSummary:
        status: Status
        if self.kernel_died:
            status = "kernel_died"
        elif self.timed_out_cell is not None:
            status = "cell_timeout"
        elif self.errors:
            status = "cell_errors"
        else:
            status = "completed"
        return RunSummary(
            status=status,
            cells_total=self.cells_total,
            cells_executed=self.cells_executed,
            errors=tuple(self.errors),
            timed_out_cell=self.timed_out_cell,
            kernel_died_cell=self.kernel_died_cell,
            parameters_cell_found=parameters_cell_found,
        )

    def save(self) -> None:
        write_text_atomic(self.executed_path, nbformat.writes(self.nb))

    def _on_cell_executed(self, cell: NotebookNode, cell_index: int, execute_reply: dict[str, Any]) -> None:
        self.replies[cell_index] = execute_reply

    # -- the run

    async def run(self) -> None:
        """Start the kernel, run the cells, stop the kernel; RunTerminated if a signal stopped it."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        handled = self._handle_signals(loop, task)
        autosave = asyncio.ensure_future(self._autosave())
        try:
            try:
                if await self._start_kernel():
                    await self._run_cells()
            except (asyncio.CancelledError, DeadKernelError):
                if self.signum is None:
                    raise
                task.uncancel()
            finally:
                self.stopping = True
                autosave.cancel()
                await self._stop_kernel(now=self.signum is not None or self.kernel_stuck)
                self.save()
        finally:
            for signum in handled:
                loop.remove_signal_handler(signum)
        if self.signum is not None:
            raise RunTerminated(self.signum)

    def _handle_signals(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> list[int]:
        """Make SIGTERM and SIGINT cancel the run (where this thread may handle signals)."""
        handled = []
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum, task)
            except (RuntimeError, ValueError, NotImplementedError):
                break  # not the main thread: the caller handles signals
            handled.append(signum)
        return handled

    def _on_signal(self, signum: int, task: asyncio.Task[Any]) -> None:
        if self.signum is None:
            self.signum = signum
            if not self.stopping:  # once the kernel is being stopped, let that finish
                task.cancel()

    async def _start_kernel(self) -> bool:
        """Start the kernel and its client; False (recorded as a dead kernel) if it does not come up."""
        try:
            await self.client.async_start_new_kernel(cwd=str(self.cwd), env=self.env)
            provisioner = self.km.provisioner
            self.pgid = getattr(provisioner, "pgid", None)
            await self.client.async_start_new_kernel_client()
        except Exception as exc:  # a kernel that cannot start is this run's outcome, not a crash
            log.error("the kernel did not start: %s", _first_line(str(exc)) or type(exc).__name__)
            self.kernel_died = True
            return False
        try:
            await self._fetch_language_info()
        except DeadKernelError:
            if self.signum is not None:
                raise
            log.error("the kernel died before the first cell")
            self.kernel_died = True
            return False
        return True

    async def _fetch_language_info(self) -> None:
        """Copy the kernel's language_info into the notebook's metadata (the HTML export's highlighting)."""
        kc = self.client.kc
        assert kc is not None
        msg_id = kc.kernel_info()
        try:
            reply = await asyncio.wait_for(self.client.async_wait_for_reply(msg_id), self.startup_timeout_s)
        except asyncio.TimeoutError:
            log.warning("the kernel did not send its language info within %g s", self.startup_timeout_s)
            return
        if reply is not None and "language_info" in reply["content"]:
            self.nb.metadata["language_info"] = reply["content"]["language_info"]

    async def _run_cells(self) -> None:
        self.save()
        for index, cell in enumerate(self.nb.cells):
            if not _runs(cell):
                continue
            original = self.original_index(index)
            if original is not None:
                self.cells_executed += 1
            self.running = index
            try:
                await self.client.async_execute_cell(
                    cell, index, execution_count=self.client.code_cells_executed + 1
                )
            except DeadKernelError:
                if self.signum is not None:
                    raise
                await self._record_death(cell, original)
                return
            finally:
                self.running = None
            timed_out = self._record_reply(cell, original, self.replies.pop(index, None))
            if timed_out and not await self._kernel_responds(INTERRUPT_GRACE_S):
                if not await self.km.is_alive():
                    await self._record_death(cell, original)
                    return
                self.kernel_stuck = True
                self._amend_timeout(
                    cell,
                    original,
                    f"; the kernel ignored the interrupt for {INTERRUPT_GRACE_S:g} s, so the cells after it did not run",
                )
                self.save()
                return
            self.save()

    def _record_reply(self, cell: NotebookNode, original: int | None, reply: dict[str, Any] | None) -> bool:
        """Record an error reply; True when it is the stand-in reply nbclient gives for a timed-out cell."""
        if reply is None or reply.get("content", {}).get("status") != "error":
            return False
        content = reply["content"]
        ename, evalue = str(content.get("ename", "")), str(content.get("evalue", ""))
        # nbclient's stand-in for a timed-out cell is error_on_timeout without a message header.
        timed_out = ename == TIMEOUT_ENAME and "header" not in reply
        if timed_out:
            cell.outputs.append(_error_output(ename, evalue))
            if original is not None and self.timed_out_cell is None:
                self.timed_out_cell = original
        if original is not None:
            self.errors.append(CellError(original, ename, evalue))
        return timed_out

    def _amend_timeout(self, cell: NotebookNode, original: int | None, more: str) -> None:
        """Add more to the evalue of the timeout just recorded for cell (its output and its errors entry)."""
        output = cell.outputs.pop()
        cell.outputs.append(_error_output(output["ename"], output["evalue"] + more))
        if original is not None:
            last = self.errors.pop()
            self.errors.append(CellError(last.cell_index, last.ename, last.evalue + more))

    async def _record_death(self, cell: NotebookNode, original: int | None) -> None:
        evalue = f"the kernel died while running this cell ({await self._exit_description()})"
        cell.outputs.append(_error_output(DEAD_KERNEL_ENAME, evalue))
        self.kernel_died = True
        self.kernel_died_cell = original
        if original is not None:
            self.errors.append(CellError(original, DEAD_KERNEL_ENAME, evalue))

    async def _exit_description(self) -> str:
        provisioner = self.km.provisioner
        code = await provisioner.poll() if provisioner is not None else None
        if code is None:
            return "exit status unknown"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            hint = ", often the memory limit" if -code == signal.SIGKILL else ""
            return f"killed by {name}{hint}"
        return f"exit status {code}"

    async def _kernel_responds(self, within_s: float) -> bool:
        """Whether the kernel answers a kernel_info request within within_s (it is idle, not stuck)."""
        kc = self.client.kc
        assert kc is not None
        msg_id = kc.kernel_info()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while (left := deadline - loop.time()) > 0:
            try:
                msg = await ensure_async(kc.shell_channel.get_msg(timeout=left))
            except queue.Empty:
                return False
            if msg["parent_header"].get("msg_id") == msg_id:
                return True
        return False

    async def _autosave(self) -> None:
        """Save the notebook every AUTOSAVE_INTERVAL_S while the running cell has new output."""
        saved: tuple[Any, ...] | None = None
        while True:
            await asyncio.sleep(AUTOSAVE_INTERVAL_S)
            if self.running is None:
                continue
            outputs = self.nb.cells[self.running].get("outputs", [])
            state = (self.running, len(outputs), id(outputs[-1]) if outputs else None)
            if outputs and state != saved:
                try:
                    self.save()
                except OSError as exc:  # the save after the cell meets the same failure and raises it
                    log.warning("could not save the executed notebook while a cell ran: %s", exc)
                saved = state

    async def _stop_kernel(self, *, now: bool) -> None:
        """Shut the kernel down (killed at once when now), then kill its process group's leftovers."""
        try:
            kc = self.client.kc
            if kc is not None:
                await ensure_async(kc.stop_channels())
            if self.km.has_kernel:
                if await self.km.is_alive():
                    await self.km.shutdown_kernel(now=now)
                else:
                    await self.km.cleanup_resources()
        finally:
            if self.pgid is not None and self.pgid != os.getpgrp():
                try:
                    os.killpg(self.pgid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass  # nothing left of it


def _error_output(ename: str, evalue: str) -> NotebookNode:
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def run_notebook(
    path: str | os.PathLike[str],
    *,
    executed_path: str | os.PathLike[str],
    summary_path: str | os.PathLike[str],
    params: Mapping[str, object],
    cell_timeout_s: float | None = None,
    startup_timeout_s: float = 60,
) -> RunSummary:
    """Run the notebook at path as the module docstring describes; the summary is also written to summary_path.

    Raises NotebookNotFoundError, InvalidNotebookError or ParameterError before anything
    runs, and RunTerminated when SIGTERM/SIGINT stops the run. Call it from a thread with
    no running event loop.
    """
    if cell_timeout_s is not None and not cell_timeout_s > 0:
        raise ValueError(f"cell timeout {cell_timeout_s!r} is not a positive number of seconds")
    if not startup_timeout_s > 0:
        raise ValueError(f"startup timeout {startup_timeout_s!r} is not a positive number of seconds")
    source = read_notebook(path)
    nb, injected_at, found = _inject(source, params)
    executed = Path(executed_path).absolute()
    env = kernel_environment(executed.parent / RUNTIME_DIR_NAME)
    execution = _Execution(
        nb,
        injected_at=injected_at,
        executed_path=executed,
        cwd=Path(path).absolute().parent,
        env=env,
        cell_timeout_s=cell_timeout_s,
        startup_timeout_s=startup_timeout_s,
    )
    execution.save()  # the executed copy exists (parameters injected) before the kernel starts
    asyncio.run(execution.run())
    summary = execution.summary(found)
    write_json_atomic(summary_path, summary.to_json())
    return summary


# ---------------------------------------------------------------- command line


def parse_params(items: Sequence[str]) -> dict[str, object]:
    """--param NAME=JSON arguments as a mapping; ParameterError names the malformed one."""
    params: dict[str, object] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ParameterError(f"--param {item} is not NAME=JSON")
        if name in params:
            raise ParameterError(f"--param {name} is given twice")
        try:
            params[name] = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParameterError(
                f"--param {item} is not NAME=JSON: the value is not JSON ({exc.msg} at column {exc.colno})"
            ) from None
    return params


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbrun",
        description="Run a notebook in a fresh kernel of this interpreter; write the executed copy, HTML and a summary.",
    )
    parser.add_argument("notebook", help="the notebook to run")
    parser.add_argument("--executed", required=True, metavar="OUT.ipynb", help="where the executed notebook goes")
    parser.add_argument("--summary", required=True, metavar="SUMMARY.json", help="where the run summary goes")
    parser.add_argument(
        "--param", action="append", default=[], metavar="NAME=JSON", help="a parameter to inject (repeatable)"
    )
    parser.add_argument("--cell-timeout", type=_positive_seconds, metavar="S", help="per-cell time limit (default: none)")
    parser.add_argument(
        "--startup-timeout", type=_positive_seconds, default=60.0, metavar="S", help="kernel start limit (default: 60)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="nbrun: %(message)s")
    try:
        run_notebook(
            args.notebook,
            executed_path=args.executed,
            summary_path=args.summary,
            params=parse_params(args.param),
            cell_timeout_s=args.cell_timeout,
            startup_timeout_s=args.startup_timeout,
        )
    except (NotebookNotFoundError, InvalidNotebookError, ParameterError) as exc:
        print(f"nbrun: {exc}", file=sys.stderr)
        return 2
    except RunTerminated as exc:
        print(f"nbrun: {exc}", file=sys.stderr)
        return 128 + exc.signum
    return 0


if __name__ == "__main__":
    sys.exit(main())
