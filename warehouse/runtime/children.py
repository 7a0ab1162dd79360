"""A launcher that ends dbt with the task that started it, however it ends (Cosmos starts it apart).

Cosmos starts dbt in a session of its own, where a dead task's dbt would go on writing. Linux
sends the launcher SIGTERM when its parent dies (`PR_SET_PDEATHSIG`): it kills dbt, removes
Cosmos's project copy and exits; it holds `--hold` (the children lock) shared while it and dbt
live. While the parent lives it is transparent: status, output and SIGTERM/SIGHUP pass through.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from warehouse.settings import DBT_PROJECT_DIR

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process when its parent dies (Linux only; elsewhere a
    no-op). The setting survives exec, so it also binds the program exec'd next."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def launcher_command(
    command: Sequence[str], hold: Path | None = None, project_copy: str | os.PathLike | None = None
) -> list[str]:
    """`command` run through the launcher by this Python, holding `hold` shared while it lives
    and removing `project_copy` if its parent dies first."""
    wrapped = [sys.executable, "-m", "warehouse.runtime.children"]
    if hold is not None:
        wrapped += ["--hold", str(hold)]
    if project_copy is not None:
        wrapped += ["--project-copy", str(project_copy)]
    return [*wrapped, "--", *command]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse.runtime.children")
    parser.add_argument("--hold", type=Path, help="lock file to hold shared while it lives")
    parser.add_argument("--project-copy", type=Path, help="remove it if the parent dies")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to run")

    parent = os.getppid()
    die_with_parent(signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before prctl took effect
        return 128 + signal.SIGTERM
    held: tuple[int, ...] = ()
    if args.hold is not None:
        held = (os.open(args.hold, os.O_RDWR | os.O_CREAT, 0o644),)
        fcntl.flock(held[0], fcntl.LOCK_SH)  # inherited by the child: released when both end
    child: subprocess.Popen | None = None

    def forward(signum, _frame) -> None:
        if child is None or child.poll() is not None:
            return
        if os.getppid() != parent:
            child.kill()  # nobody waits for its result: stop writing at once
        elif signum != signal.SIGINT:  # SIGINT comes to the whole group, the child included
            child.send_signal(signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    child = subprocess.Popen(
        command, preexec_fn=lambda: die_with_parent(signal.SIGKILL), pass_fds=held
    )
    if os.getppid() != parent:  # it died while the child was starting
        child.kill()
    returncode = child.wait()
    copy = args.project_copy
    a_copy = copy and (copy / "dbt_project.yml").exists() and copy.resolve() != DBT_PROJECT_DIR
    if os.getppid() != parent and a_copy:  # a copy of the project, never the project itself
        shutil.rmtree(copy, ignore_errors=True)
    for fd in held:
        os.close(fd)
    return 128 - returncode if returncode < 0 else returncode


if __name__ == "__main__":
    sys.exit(main())  # the exit status is the child's
