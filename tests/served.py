"""A console script's body for the fork server's tests (`tests.served:main`): prints how it
runs, then exits with the status its first argument gives, or sleeps on `sleep`."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    report = {
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "mark": os.environ.get("SERVED_MARK"),
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "session_leader": os.getsid(0) == os.getpid(),
        "name": Path("/proc/self/comm").read_text().strip(),  # what ps shows
    }
    print(json.dumps(report), flush=True)
    if sys.argv[1:2] == ["sleep"]:
        time.sleep(600)
    return int(sys.argv[1]) if sys.argv[1:2] and sys.argv[1].isdigit() else 0
