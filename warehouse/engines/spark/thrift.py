"""A local Spark Thrift server from the pyspark wheel, which has no start script
(``sbin/start-thriftserver.sh``), for dbt-spark's ``thrift`` method.

``make spark-thrift-up`` / ``make spark-thrift-down`` (``python -m warehouse.engines.spark
thrift-start`` / ``thrift-stop``) start and stop it on 127.0.0.1 at ``WAREHOUSE_SPARK_PORT``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from warehouse.settings import Settings

THRIFT_SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"


def spark_home() -> Path:
    """The pyspark wheel's folder: its jars include the Thrift server's, its bin spark-submit
    (the wheel has no sbin/start-thriftserver.sh)."""
    import pyspark  # the `spark` extra

    return Path(pyspark.__file__).resolve().parent


def _pid_file(settings: Settings) -> Path:
    return settings.spark_dir / "thrift-server.pid"


def thrift_command(settings: Settings, host: str = "127.0.0.1") -> list[str]:
    """spark-submit starting HiveThriftServer2 on `host:port`, with the same warehouse folder
    and Derby metastore a `session` build of this data folder uses (one at a time: Derby is
    single-process), sized for one machine."""
    home = spark_home()
    spark = settings.spark_dir
    return [
        str(home / "bin" / "spark-submit"),
        "--class",
        THRIFT_SERVER_CLASS,
        "--name",
        "warehouse-thrift-server",
        "--master",
        settings.spark_master,
        "--driver-memory",
        settings.spark_driver_memory,
        "--conf",
        f"spark.sql.warehouse.dir={settings.spark_warehouse_dir}",
        "--conf",
        "spark.hadoop.javax.jdo.option.ConnectionURL="
        f"jdbc:derby:;databaseName={spark / 'metastore_db'};create=true",
        "--conf",
        f"spark.driver.extraJavaOptions=-Dderby.system.home={spark}",
        "--conf",
        f"spark.sql.shuffle.partitions={settings.spark_shuffle_partitions}",
        "--conf",
        "spark.sql.session.timeZone=UTC",
        "--conf",
        "spark.sql.sources.partitionOverwriteMode=dynamic",
        "--conf",
        "spark.ui.enabled=false",
        "--hiveconf",
        f"hive.server2.thrift.bind.host={host}",
        "--hiveconf",
        f"hive.server2.thrift.port={settings.spark_port}",
        "--hiveconf",
        "hive.server2.transport.mode=binary",
        "spark-internal",
    ]


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def thrift_start(settings: Settings, timeout: float = 240) -> tuple[int, float]:
    """Start the Thrift server on 127.0.0.1 at the settings' Spark port, in its own session
    (so it can be stopped as a group), and wait until it accepts connections. Returns its pid
    and the seconds it took to start. The log goes to `<data>/spark/thrift-server.log`."""
    port = settings.spark_port
    host = "127.0.0.1"
    if _port_open(host, port):
        raise RuntimeError(f"port {port} is already in use; set WAREHOUSE_SPARK_PORT")
    spark = settings.spark_dir
    spark.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SPARK_HOME": str(spark_home()),
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": host,
    }
    started = time.perf_counter()
    with open(spark / "thrift-server.log", "ab") as log:
        process = subprocess.Popen(
            thrift_command(settings, host),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=spark,
            env=env,
            start_new_session=True,
        )
    _pid_file(settings).write_text(str(process.pid))
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(
                f"the Thrift server exited with status {process.returncode}; "
                f"see {spark / 'thrift-server.log'}"
            )
        if _port_open(host, port):
            return process.pid, time.perf_counter() - started
        time.sleep(0.5)
    thrift_stop(settings)
    raise RuntimeError(f"the Thrift server did not listen on {port} in {timeout:.0f} s")


def thrift_stop(settings: Settings, timeout: float = 60) -> bool:
    """Stop the Thrift server `thrift_start` started for this data folder, with every process
    below it (SIGTERM, then SIGKILL after `timeout`). Returns False when none was running."""
    from warehouse.runtime.processes import terminate, tree

    pid_file = _pid_file(settings)
    if not pid_file.exists():
        return False
    processes = tree(int(pid_file.read_text()))
    terminate(processes, timeout)
    pid_file.unlink(missing_ok=True)
    return bool(processes)
