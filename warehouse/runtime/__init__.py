"""Running Airflow for this project where Airflow does not (dbt's launcher, `make run`, `make up`);
the stages (ingest, transform, audit, publish) never import Airflow."""
