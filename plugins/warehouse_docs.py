"""Airflow's plugins folder (AIRFLOW__CORE__PLUGINS_FOLDER, set by `make up` and compose): the
dbt docs and the last run's Data Docs in the Airflow UI (warehouse/serve/docs_plugin.py)."""

from warehouse.serve.docs_plugin import WarehouseDocsPlugin

__all__ = ["WarehouseDocsPlugin"]
