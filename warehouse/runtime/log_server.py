"""Airflow's log server, on 127.0.0.1 only (`make up`'s `log-server` service).

Airflow's scheduler and triggerer each start a log server that listens on every interface
(`[::]`) with no setting to change that (Airflow 3.3, `airflow/utils/serve_logs/core.py`).
`make up` starts them with `--skip-serve-logs` and runs this one instead: the same app
(`airflow.utils.serve_logs.log_server`, which checks the api-server's signed token on every
request), bound to 127.0.0.1 on the worker log port and the triggerer log port of the settings
(`[logging] worker_log_server_port` and `trigger_log_server_port`), in one process.
"""

from __future__ import annotations

import asyncio
import socket


def listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def main() -> None:
    import uvicorn
    from airflow.configuration import conf
    from airflow.utils.serve_logs.log_server import create_app

    ports = sorted(
        {
            conf.getint("logging", "worker_log_server_port"),
            conf.getint("logging", "trigger_log_server_port"),
        }
    )
    sockets = [listen(port) for port in ports]
    config = uvicorn.Config(create_app(), log_config=None, access_log=False, log_level="warning")
    print(f"log server on {', '.join(f'127.0.0.1:{port}' for port in ports)}", flush=True)
    asyncio.run(uvicorn.Server(config).serve(sockets=sockets))


if __name__ == "__main__":
    main()
