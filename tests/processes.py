"""The processes a grading batch left behind, read from /proc (no pkill): shared by the tests and the soak benchmark."""

from __future__ import annotations

import os
from pathlib import Path

from grader.sandbox import SANDBOX_UID


def batch_processes(out: Path, since: float) -> tuple[list[str], list[str]]:
    """(ours, foreign): processes mentioning out, or of uid 65534 started since `since`; foreign ones are uid-65534
    processes whose environment has a HOME that does not mention out (another grader's sandbox)."""
    needle = str(out).encode()
    boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime "))
    ticks = os.sysconf("SC_CLK_TCK")
    ours, foreign = [], []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            uid = int(next(line.split()[1] for line in (entry / "status").read_text().splitlines()
                           if line.startswith("Uid:")))
            start = boot + int((entry / "stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                environ = b""
            try:
                cwd = os.readlink(entry / "cwd").encode()
            except OSError:
                cwd = b""
        except (OSError, StopIteration, ValueError, IndexError):
            continue
        text = cmdline.replace(b"\0", b" ")[:160].decode("utf-8", "replace")
        shown = f"pid {entry.name} uid {uid}: {text}"
        if needle in cmdline or needle in environ or cwd.startswith(needle):
            ours.append(shown)
        elif uid == SANDBOX_UID and start >= since - 1:
            (foreign if b"HOME=" in environ else ours).append(shown)
    return ours, foreign
