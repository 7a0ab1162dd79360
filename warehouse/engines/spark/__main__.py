"""``python -m warehouse.engines.spark``: the Spark steps as commands (the DAG calls the same
functions), each printing its result as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from warehouse.engines import spark
from warehouse.engines.spark.export import export_raw
from warehouse.engines.spark.load import load_spark_tables
from warehouse.engines.spark.thrift import thrift_start, thrift_stop
from warehouse.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m warehouse.engines.spark",
        description=spark.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps the diagram's lines
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("export-raw", help="write the raw tables as Parquet for Spark")
    commands.add_parser(
        "load-marts", help="copy the marts Spark built into the build database, described"
    )
    start = commands.add_parser("thrift-start", help="start a local Spark Thrift server")
    start.add_argument("--port", type=int, default=None)
    commands.add_parser("thrift-stop", help="stop the Thrift server thrift-start started")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if args.command == "export-raw":
        print(json.dumps(export_raw(settings).as_dict()))
    elif args.command == "load-marts":
        print(json.dumps(load_spark_tables(settings).as_dict()))
    elif args.command == "thrift-start":
        if args.port:
            settings = replace(settings, spark_port=args.port)
        pid, seconds = thrift_start(settings)
        print(json.dumps({"pid": pid, "port": settings.spark_port, "seconds": seconds}))
    elif args.command == "thrift-stop":
        print(json.dumps({"stopped": thrift_stop(settings)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
