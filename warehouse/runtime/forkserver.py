"""dbt imported ahead of its first use, started by forking: the transform task under
`warehouse run`.

A new dbt process spends about 3.5 s of CPU before it does anything, nearly all of it importing
dbt-core and its adapter. Under `warehouse run` every task shares one process, so that import
can happen in a process of its own, on the second core, while Airflow starts the first tasks
and ingestion runs: the run starts a fork server (`serving`) that imports dbt and waits. The
transform task's launcher (`warehouse.runtime.children`) hands it dbt's command line,
environment, working folder, standard streams and the children lock it holds; the server
forks a copy of itself, already imported, that runs them as the `dbt` console script would
(`sys.argv`, then `dbt.cli.main.cli()`), and reports the copy's pid and then its exit status.

The launcher stays what it is for a dbt it starts itself: it forwards signals to the copy,
kills it when the task's process dies, and exits with its status. The copy ends with the
launcher (it reads its connection to the server, which closes when the launcher ends however
it ends) and with the server (PDEATHSIG), and holds the children lock like the launcher's own
child. Anything other than the served program, or a server that is not there, runs as before.
Under a scheduler each task has its own process: no server runs there.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import importlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path

from warehouse.runtime.children import die_with_parent

PR_SET_NAME = 15  # <linux/prctl.h>
# Descriptors handed over with a request: stdin, stdout, stderr, then any held locks.
MAX_FDS = 8
# The length of a request's JSON, sent with its descriptors (SCM_RIGHTS), before the JSON.
_HEADER = struct.Struct("!I")
# The longest path a Unix socket's address may hold (sun_path, less its terminating NUL).
_MAX_SOCKET_PATH = 107

# The server of this process, while `serving` runs: the program it stands for and its socket.
_served: tuple[str, Path] | None = None


@contextlib.contextmanager
def serving(
    program: Path, entry: str, preload: Sequence[str] = (), env: dict[str, str] | None = None
) -> Iterator[None]:
    """While the block runs, a server (dying with this process) that has imported `entry`
    (`module:function`, the console script of `program`) and `preload`, for `address` to
    name. Without a socket folder short enough for a Unix address, nothing is started."""
    global _served
    folder = Path(tempfile.mkdtemp(prefix="warehouse-fork-"))  # the owner's only (0700)
    path = folder / "server.sock"
    if len(str(path)) > _MAX_SOCKET_PATH:
        shutil.rmtree(folder, ignore_errors=True)
        yield
        return
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        listener.listen(1)  # from now on a launcher can connect; it waits for the imports
        command = [sys.executable, "-m", "warehouse.runtime.forkserver", "--entry", entry]
        command += [arg for module in preload for arg in ("--preload", module)]
        server = subprocess.Popen(
            [*command, "--listener", str(listener.fileno())],
            pass_fds=(listener.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            preexec_fn=lambda: die_with_parent(signal.SIGKILL),
            env=env,
        )
    finally:
        listener.close()
    _served = (str(program), path)
    try:
        yield
    finally:
        _served = None
        server.kill()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def address(command: Sequence[str]) -> Path | None:
    """The socket of this process's server when it serves `command`'s program, else None."""
    if _served is not None and command and str(command[0]) == _served[0]:
        return _served[1]
    return None


# --- the launcher's side ----------------------------------------------------------------------


class ServedChild:
    """A program run by the server, seen by the launcher as a child process: its pid (for
    signals), and its exit status (from the server; negative for a signal, as Popen's)."""

    def __init__(self, connection: socket.socket, replies, pid: int):
        self._connection = connection
        self._replies = replies
        self.pid = pid
        self.returncode: int | None = None
        self.server_lost = False  # the server ended before saying how the copy ended

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self) -> int:
        if self.returncode is None:
            reply = self._replies.readline().split()
            # No reply: the server died, and the copy with it (PDEATHSIG).
            self.server_lost = reply[:1] != ["exit"]
            self.returncode = -signal.SIGKILL if self.server_lost else int(reply[1])
            self._replies.close()
            self._connection.close()
        return self.returncode


def start(server: Path, command: Sequence[str], held: Sequence[int] = ()) -> ServedChild | None:
    """Have the server at `server` run `command` with this process's environment, working
    folder and standard streams; None when no server answers (the caller starts it itself)."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(server))
        request = json.dumps(
            {"argv": list(command), "env": dict(os.environ), "cwd": os.getcwd()}
        ).encode()
        socket.send_fds(connection, [_HEADER.pack(len(request))], [0, 1, 2, *held])
        connection.sendall(request)
        replies = connection.makefile("r")
        reply = replies.readline().split()
    except OSError:
        connection.close()
        return None
    if reply[:1] != ["pid"]:  # the server ended before it forked: nothing ran
        connection.close()
        return None
    return ServedChild(connection, replies, int(reply[1]))


# --- the server's side ------------------------------------------------------------------------


def _receive(connection: socket.socket) -> tuple[dict, list[int]]:
    header, fds, _, _ = socket.recv_fds(connection, _HEADER.size, MAX_FDS)
    (length,) = _HEADER.unpack(header)
    data = b""
    while len(data) < length:
        chunk = connection.recv(length - len(data))
        if not chunk:
            raise ConnectionError("the launcher left before its request was complete")
        data += chunk
    return json.loads(data), fds


def _end_with(connection: socket.socket) -> None:
    """Kill this process when the launcher's end of `connection` closes (the launcher ended)."""
    with contextlib.suppress(OSError):
        while connection.recv(1):
            pass
    os.kill(os.getpid(), signal.SIGKILL)


def _name_process(name: str) -> None:
    """The name `ps`, `top` and psutil show (Linux's comm, 15 bytes): `dbt`, not `python`."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def _run(program, request: dict, fds: list[int], connection: socket.socket) -> int:
    """In the forked copy: become the program's process, run it, return its exit status."""
    die_with_parent(signal.SIGKILL)  # the server
    os.setsid()  # out of the terminal's reach, as Cosmos starts dbt; the launcher forwards
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    for fd in fds[:3]:
        if fd > 2:
            os.close(fd)
    # fds[3:] (the children lock, held shared) stay open for as long as this process lives.
    threading.Thread(target=_end_with, args=(connection,), daemon=True).start()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a new Python
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = request["argv"]
    _name_process(Path(sys.argv[0]).name)
    # As in a console script, whose `__main__` is the script: command-line tools (click) name
    # themselves after `sys.argv[0]`, not after this module.
    script = sys.modules["__main__"]
    script.__spec__ = script.__package__ = None
    try:
        code = program()  # a console script's body: `sys.exit(cli())`
    except SystemExit as exit_:
        code = exit_.code
    except KeyboardInterrupt:
        # As Python ends on an uncaught Ctrl-C: killed by SIGINT (dbt catches its own).
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
        raise
    except BaseException:
        traceback.print_exc()
        code = 1
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    return code or 0


def serve(listener: socket.socket, program) -> None:
    """Answer one request at a time (the run has one dbt at a time: its writer pool)."""
    while True:
        connection, _ = listener.accept()
        with connection:
            try:
                request, fds = _receive(connection)
            except (OSError, ValueError):
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                code = 70  # EX_SOFTWARE, should `_run` itself fail
                try:
                    listener.close()
                    code = _run(program, request, fds, connection)
                finally:
                    with contextlib.suppress(Exception):
                        sys.stdout.flush()
                        sys.stderr.flush()
                    os._exit(code)
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):
                connection.sendall(f"pid {pid}\n".encode())
            _, status = os.waitpid(pid, 0)
            with contextlib.suppress(OSError):
                connection.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m warehouse.runtime.forkserver")
    parser.add_argument("--entry", required=True, help="module:function, a console script's")
    parser.add_argument("--preload", action="append", default=[], help="a module to import")
    parser.add_argument("--listener", type=int, required=True, help="a listening socket's fd")
    args = parser.parse_args(argv)
    # `python -m` put the working folder first on the path; a console script (dbt's) has its
    # own folder there instead, so a `dbt/` where `warehouse run` was started is not imported.
    if sys.path and sys.path[0] in ("", os.getcwd()):
        sys.path[0] = str(Path(sys.executable).parent)
    listener = socket.socket(fileno=args.listener)
    module, function = args.entry.split(":")
    program = getattr(importlib.import_module(module), function)
    for name in args.preload:
        with contextlib.suppress(ImportError):  # the program imports it itself, or says why
            importlib.import_module(name)
    serve(listener, program)
    return 0


if __name__ == "__main__":
    sys.exit(main())
