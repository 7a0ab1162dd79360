# The only entry points a user needs: `make run` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
# uv comes from PATH, or is installed with pip when missing (a fresh machine has python3 + pip).
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)

# Settings (folders, Airflow's home) are the `warehouse` command's own (warehouse/settings.py);
# the quiet environment (no telemetry) is the one checked-in file every entry point reads.
include quiet.env
export $(shell sed -n 's/^\([A-Z_][A-Z0-9_]*\)=.*/\1/p' quiet.env)
export UV_PYTHON_DOWNLOADS := never
# Bytecode is compiled once, at install: a Python that does not write it (PYTHONDONTWRITEBYTECODE,
# a read-only venv) otherwise compiles every module it imports, in every process it starts
# (Airflow, dbt, GX: seconds of each run).
export UV_COMPILE_BYTECODE := 1

# Debian packages come through apt, with sudo unless we are root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup spark-setup spark-thrift-up spark-thrift-down test-packages postgres-packages superset-lock run up down test test-fast lint format docs seeds bench clean

help:
	@echo "make run    set everything up and run the pipeline DAG once (Airflow, DuckDB)"
	@echo "make up     start Airflow (UI on localhost:8080, metadata in PostgreSQL) with the DAGs on their schedule"
	@echo "make down   stop what make up started"
	@echo "make test   run the whole test suite (what CI runs)"
	@echo "make test-fast  the inner loop: every test that needs no whole DAG run, scheduler or browser"
	@echo "make lint   ruff (lint + format check) and sqlfluff on the dbt models (DuckDB and Spark)"
	@echo "make docs   dbt docs as one offline HTML file in data/docs/ (after make run)"
	@echo "make seeds  regenerate the synthetic landing files in seeds/"
	@echo "make bench  benchmarks at 1M and 10M usage rows (SCALE=100M for 100M too)"

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --all-groups
	@touch $@

setup: $(VENV)/.synced

# Apache Spark (pyspark, dbt-spark; about 460 MB of jars) is an optional extra, never part of
# the default install: `make run` stays DuckDB-only. The Spark tests call this target first.
$(VENV)/.synced-spark: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	$(UV) sync --frozen --all-groups --extra spark
	@touch $(VENV)/.synced $@

spark-setup: $(VENV)/.synced-spark

# A local Spark Thrift server from the pyspark wheel (127.0.0.1:$$WAREHOUSE_SPARK_PORT, default
# 10000), for dbt's `thrift` method (WAREHOUSE_ENGINE=spark WAREHOUSE_SPARK_METHOD=thrift).
spark-thrift-up: spark-setup
	$(BIN)/python -m warehouse.engines.spark thrift-start

spark-thrift-down:
	$(BIN)/python -m warehouse.engines.spark thrift-stop

# Chromium (Debian's package) opens the rendered report and the Superset dashboard headless in
# the tests; chromium-driver lets the Superset test drive it (through Superset's own selenium),
# and PostgreSQL holds that test's Superset metadata, as in docker-compose.yml (and, as
# postgres-packages, the metadata of the scheduler's end-to-end test, as make up does).
test-packages: postgres-packages
	@{ command -v chromium && command -v chromedriver && ls /usr/lib/postgresql/*/bin/initdb; } \
	  >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver postgresql; }

# The Superset image's lock (bi/superset/requirements.lock), for the image's Python 3.10.
superset-lock:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	cd bi/superset && $(UV) pip compile --quiet --python-version 3.10 \
	  --python-platform x86_64-manylinux_2_28 requirements.in -o requirements.lock

# PostgreSQL 15 (Debian's package) holds the metadata of the running Airflow (make up); the
# project runs its own cluster under the Airflow home, never the package's system service.
PG_BIN := /usr/lib/postgresql/15/bin
postgres-packages:
	@test -x $(PG_BIN)/initdb || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15; }

run: setup
	$(BIN)/warehouse run

up: setup postgres-packages
	$(BIN)/warehouse up

down: setup
	$(BIN)/warehouse down

test: setup test-packages
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not slow"

# sqlfluff's dbt templater compiles the models; it gets a scratch database, never the build's.
# The models are linted in DuckDB's dialect and in Spark's, then for engine-only types and
# inexact money arithmetic (warehouse/engines/sql_portability.py).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	mkdir -p data/lint
	WAREHOUSE_DATA_DIR=$(CURDIR)/data/lint $(BIN)/sqlfluff lint dbt_project/models
	WAREHOUSE_DATA_DIR=$(CURDIR)/data/lint $(BIN)/sqlfluff lint --config .sqlfluff-sparksql dbt_project/models
	$(BIN)/python -m warehouse.engines.sql_portability dbt_project

docs: setup
	$(BIN)/warehouse docs

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

seeds: setup
	$(BIN)/warehouse generate --out seeds

# The pipeline against the floor and its peers; results in benchmarks/results/ and README.md.
comma := ,
SCALES := 1M,10M$(if $(filter-out 1M 10M,$(SCALE)),$(comma)$(SCALE))
bench: setup
	$(BIN)/python -m benchmarks.harness --scales $(SCALES)

# Stops what make up started (if there is a venv to stop it with), then removes every output.
clean:
	@if [ -x $(BIN)/warehouse ]; then $(BIN)/warehouse down; fi
	rm -rf data .airflow benchmarks/work
