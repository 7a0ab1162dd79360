"""The dbt docs and the last run's GX Data Docs in the Airflow UI (Browse menu), behind Airflow's
own login: an Airflow 3 plugin (a FastAPI app and two external views). Cosmos's docs plugin
serves dbt's docs only, and to anyone who can reach the API server (its routes check no login).

Loaded from plugins/warehouse_docs.py, Airflow's plugins folder under `make up` and compose
(compose mounts the project rather than installing it, so an entry point would not be seen).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/warehouse-docs"


def _sites() -> dict[str, Path]:
    """Each site's folder in the data folder: `dbt` (warehouse docs) and `gx` (Data Docs)."""
    from warehouse.settings import Settings

    settings = Settings.from_env()
    return {"dbt": settings.dbt_docs.parent, "gx": settings.data_docs.parent}


def create_app():
    """A FastAPI app serving each site's files to a logged-in Airflow user."""
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import requires_access_view
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import FileResponse

    app = FastAPI(dependencies=[Depends(requires_access_view(AccessView.WEBSITE))])

    @app.get("/{site}/{path:path}")
    def page(site: str, path: str) -> FileResponse:
        folder = _sites().get(site)
        if folder is None:
            raise HTTPException(404, f"no site {site!r}: dbt or gx")
        target = (folder / (path or "index.html")).resolve()
        if not target.is_relative_to(folder.resolve()) or not target.is_file():
            hint = "run `warehouse docs`" if site == "dbt" else "run the pipeline"
            raise HTTPException(404, f"{target.name} is not in {folder} ({hint})")
        return FileResponse(target)

    return app


class WarehouseDocsPlugin(AirflowPlugin):
    name = "warehouse_docs"
    fastapi_apps: ClassVar[list[dict]] = [
        {"name": "warehouse docs", "app": create_app(), "url_prefix": URL_PREFIX}
    ]
    external_views: ClassVar[list[dict]] = [
        {
            "name": "Warehouse docs (dbt)",
            "href": f"{URL_PREFIX}/dbt/index.html",
            "destination": "nav",
            "category": "browse",
            "url_route": "warehouse_dbt_docs",
        },
        {
            "name": "Data Docs (last run)",
            "href": f"{URL_PREFIX}/gx/index.html",
            "destination": "nav",
            "category": "browse",
            "url_route": "warehouse_data_docs",
        },
    ]
