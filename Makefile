# The only entry points a user needs: `make run` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
# uv comes from PATH, or is installed with pip when missing (a fresh machine has python3 + pip).
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)

# Local Airflow: its home (SQLite metadata DB, logs) lives in an ignored folder of the repo.
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__EXECUTOR := LocalExecutor
# No telemetry: there is no network beyond package registries, and users should not be tracked.
export AIRFLOW__USAGE_DATA_COLLECTION__ENABLED := False
export AIRFLOW__COSMOS__ENABLE_TELEMETRY := False
export DO_NOT_TRACK := 1
export GX_ANALYTICS_ENABLED := False
export DBT_SEND_ANONYMOUS_USAGE_STATS := False
export UV_PYTHON_DOWNLOADS := never

# Debian packages come through apt, with sudo unless we are root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help setup spark-setup spark-thrift-up spark-thrift-down test-packages run up down test lint format docs seeds bench clean

help:
	@echo "make run    set everything up and run the pipeline DAG once (Airflow, DuckDB)"
	@echo "make up     start Airflow (UI on localhost:8080) with the DAGs on their schedule"
	@echo "make down   stop what make up started"
	@echo "make test   run the test suite"
	@echo "make lint   ruff (lint + format check), sqlfluff on the dbt models (DuckDB and Spark)"
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

# Chromium (Debian's package) opens the rendered report headless in the tests.
test-packages:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

run: setup
	$(BIN)/warehouse run

up: setup
	$(BIN)/warehouse up

down: setup
	$(BIN)/warehouse down

test: setup test-packages
	$(BIN)/pytest

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
