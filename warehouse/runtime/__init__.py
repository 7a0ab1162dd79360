"""Running Airflow on this machine: its home, one DAG run in this process (`warehouse run`),
the background services (`make up`), and what the DAG files share. Nothing here is a stage:
the stages (ingest, transform, audit, publish) never import Airflow."""
