"""Child processes that end with the run that started them, however it ends.

Cosmos starts dbt in a new session (`os.setsid()`), so killing the run's process group does not
reach it, and a dbt left behind keeps writing `build.duckdb` and holds its lock. The transform
task therefore runs dbt through this launcher:

    python -m warehouse.runtime.children --hold <data>/.children.lock \\
        --project-copy <Cosmos's temporary copy> -- dbt build ...

The launcher asks Linux to send it SIGTERM when its parent (the process running the task)
dies (`prctl(PR_SET_PDEATHSIG)`), holds a shared lock on the children lock for as long as it
and dbt live (the next run waits for it), and starts dbt with PDEATHSIG set to SIGKILL on the
launcher itself. When the parent dies (SIGKILL, SIGTERM, Ctrl-C, a timeout that ends the task
process) the launcher kills dbt, waits for it, removes Cosmos's temporary copy of the project
(which the dead parent can no longer remove) and exits. When the parent lives, the launcher is
transparent: dbt's output and exit status pass through, and so do signals (Cosmos's `on_kill`
signals the whole group, dbt included; a SIGTERM or SIGHUP sent to the launcher alone is
forwarded).

Linux's "parent" here is the thread that started the launcher (prctl(2), PR_SET_PDEATHSIG):
Cosmos starts dbt from the thread running the task, which is the task process's main thread
both under `dag.test()` and in Airflow's task runner, so the launcher lives exactly as long as
the task's process.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from warehouse.settings import DBT_PROJECT_DIR

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# How long a child is given to end after SIGTERM before SIGKILL.
TERM_GRACE_SECONDS = 10.0
# How long the loss of the fork server may precede the news of the parent's death.
SERVER_LOSS_GRACE_SECONDS = 1.0


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process when its parent dies (Linux only; elsewhere a
    no-op). The setting survives exec, so it also binds the program exec'd next."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def launcher_command(
    command: Sequence[str],
    hold: Path | None = None,
    project_copy: str | os.PathLike | None = None,
    server: Path | None = None,
) -> list[str]:
    """`command` run through the launcher, by this Python (holding `hold` shared while it
    lives, removing `project_copy` if its parent dies first; started by the fork server at
    `server` when it answers: `warehouse.runtime.forkserver`)."""
    wrapped = [sys.executable, "-m", "warehouse.runtime.children"]
    if hold is not None:
        wrapped += ["--hold", str(hold)]
    if project_copy is not None:
        wrapped += ["--project-copy", str(project_copy)]
    if server is not None:
        wrapped += ["--server", str(server)]
    return [*wrapped, "--", *command]


def stop_group(process: subprocess.Popen | None, grace: float = TERM_GRACE_SECONDS) -> None:
    """End a child that leads its own process group (as Cosmos starts dbt) and everything in
    that group: SIGTERM, then SIGKILL after `grace` seconds; waits for the child."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _is_project_copy(path: Path) -> bool:
    """A temporary copy of the dbt project (never the project itself)."""
    return (
        path.is_dir()
        and (path / "dbt_project.yml").exists()
        and path.resolve() != DBT_PROJECT_DIR.resolve()
    )


def main(argv: Sequence[str] | None = None) -> int:
    from warehouse.runtime import forkserver  # which imports this module's die_with_parent

    parser = argparse.ArgumentParser(prog="python -m warehouse.runtime.children")
    parser.add_argument("--hold", type=Path, help="lock file to hold shared while it lives")
    parser.add_argument("--project-copy", type=Path, help="remove it if the parent dies")
    parser.add_argument("--server", type=Path, help="a fork server to start the command")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")

    parent = os.getppid()
    orphaned = {"yes": False}

    def parent_died() -> bool:
        return orphaned["yes"] or os.getppid() != parent

    die_with_parent(signal.SIGTERM)
    if parent_died():  # the parent died before prctl took effect
        return 128 + signal.SIGTERM

    held: tuple[int, ...] = ()
    if args.hold is not None:
        hold = os.open(args.hold, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(hold, fcntl.LOCK_SH)  # inherited by the child: released when both are gone
        held = (hold,)

    child: subprocess.Popen | forkserver.ServedChild | None = None

    def forward(signum, _frame) -> None:
        if parent_died():
            orphaned["yes"] = True
            if child is not None and child.poll() is None:
                child.kill()  # nobody waits for its result: stop writing at once
        elif child is not None and child.poll() is None and not reached_by_group(signum):
            child.send_signal(signum)

    def reached_by_group(signum: int) -> bool:
        # SIGINT comes to the whole group (Cosmos's on_kill, a terminal), a child started here
        # included: forwarded, dbt would see a second Ctrl-C and skip its clean-up. A served
        # child is in a session of its own, which only this process reaches.
        return signum == signal.SIGINT and not isinstance(child, forkserver.ServedChild)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)

    if args.server is not None:
        child = forkserver.start(args.server, command, held)
    if child is None:
        child = subprocess.Popen(
            command,
            preexec_fn=lambda: die_with_parent(signal.SIGKILL),
            pass_fds=held,
        )
    if parent_died():  # it died while the child was starting
        orphaned["yes"] = True
        child.kill()
    returncode = child.wait()
    if getattr(child, "server_lost", False):
        # The server dies with the task's process, and its loss can reach this process a
        # moment before that death does (the kernel signals a dead parent's children in turn).
        deadline = time.monotonic() + SERVER_LOSS_GRACE_SECONDS
        while not parent_died() and time.monotonic() < deadline:
            time.sleep(0.01)
    if parent_died() and args.project_copy and _is_project_copy(args.project_copy):
        shutil.rmtree(args.project_copy, ignore_errors=True)
    for fd in held:
        os.close(fd)
    return 128 - returncode if returncode < 0 else returncode


if __name__ == "__main__":
    sys.exit(main())  # the exit status is the child's
