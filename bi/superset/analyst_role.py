"""The read-only Analyst role, and its `analyst` user, for the warehouse's dashboard.

Run by bootstrap.sh after the import (idempotent). The role is Gamma's permissions without
any that write (create, edit, delete, import, share), plus read access to every dataset of
the warehouse's connections (DuckDB and PostgreSQL): an analyst opens the dashboards and their
charts, and every write is refused (403).
"""

from __future__ import annotations

import os

from superset.app import create_app

ROLE = "Analyst"
# The warehouse's connections: its DuckDB file, and the same marts served by PostgreSQL.
DATABASES = ("AI revenue warehouse", "AI revenue warehouse (PostgreSQL)")
# Gamma's permissions that create, change, delete or share something: never an analyst's.
WRITES = {
    "can_add",
    "can_bulk_create",
    "can_delete",
    "can_delete_embedded",
    "can_edit",
    "can_estimate_query_cost",
    "can_format_sql",
    "can_invalidate",
    "can_share_chart",
    "can_share_dashboard",
    "can_store",
    "can_tag",
    "can_write",
}
# Except the dashboard's and explore's UI state (the filters a viewer picks, kept in
# Superset's key-value cache): the dashboard writes it on every open.
UI_STATE = {"DashboardFilterStateRestApi", "ExploreFormDataRestApi"}


def is_read(permission_view) -> bool:
    return (
        permission_view.permission.name not in WRITES or permission_view.view_menu.name in UI_STATE
    )


def main() -> None:
    app = create_app()
    with app.app_context():
        from superset import db, security_manager
        from superset.connectors.sqla.models import SqlaTable
        from superset.models.core import Database

        gamma = security_manager.find_role("Gamma")
        reads = [pv for pv in gamma.permissions if is_read(pv)]
        databases = db.session.query(Database).filter(Database.database_name.in_(DATABASES))
        ids = [database.id for database in databases]
        datasets = db.session.query(SqlaTable).filter(SqlaTable.database_id.in_(ids)).all()
        for dataset in datasets:
            reads.append(
                security_manager.add_permission_view_menu("datasource_access", dataset.perm)
            )
        role = security_manager.add_role(ROLE)
        role.permissions = reads
        db.session.commit()
        print(f"role {ROLE}: {len(reads)} permissions, datasets {[d.table_name for d in datasets]}")

        user = security_manager.find_user(username="analyst")
        if user is None:
            security_manager.add_user(
                "analyst",
                "Warehouse",
                "Analyst",
                "analyst@localhost",
                role,
                password=os.environ["SUPERSET_ANALYST_PASSWORD"],
            )
        elif user.roles != [role]:
            user.roles = [role]
        db.session.commit()


if __name__ == "__main__":
    main()
