"""The Airflow logins of `make up` and compose, kept in FAB's tables of the metadata database.

The running Airflow uses the FAB auth manager (apache-airflow-providers-fab), whose users and
roles live in the metadata database. Two logins: `admin` (FAB's Admin role) and `viewer`
(FAB's built-in Viewer role: DAGs, runs, task instances and logs, read only; it may not
trigger, pause, clear or edit). Their passwords come from the settings when set, otherwise they
are generated on the first start and kept in a file only its owner can read
(`<airflow home>/airflow_passwords.json`).

`sync_logins` runs in a process configured for the metadata database (as
`python -m warehouse.runtime.accounts PASSWORD_FILE`, with the services' environment): it
creates FAB's roles and permissions, then each login with its role and password.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from warehouse.settings import Settings

# Each login and its FAB role (FAB's built-in roles: Admin, Op, User, Viewer, Public).
LOGINS = {"admin": "Admin", "viewer": "Viewer"}
PASSWORD_FILE = "airflow_passwords.json"


def password_file(home: Path) -> Path:
    return home / PASSWORD_FILE


def ensure_passwords(settings: Settings) -> dict[str, str]:
    """Each login's password: from the settings, else the one kept in the password file, else
    a new random one; the file (mode 0600) then holds them all."""
    path = password_file(settings.airflow_home)
    stored = json.loads(path.read_text() or "{}") if path.exists() else {}
    given = {"admin": settings.airflow_password, "viewer": settings.airflow_viewer_password}
    passwords = {
        login: given[login] or stored.get(login) or secrets.token_urlsafe(18) for login in LOGINS
    }
    if stored != passwords:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump(passwords, file)
    os.chmod(path, 0o600)
    return passwords


def sync_logins(passwords: dict[str, str]) -> list[str]:
    """Create FAB's roles and permissions, then each login with its one role and password."""
    from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

    done = []
    with get_application_builder() as appbuilder:
        security = appbuilder.sm
        appbuilder.add_permissions(update_perms=True)
        security.sync_roles()
        for login, role_name in LOGINS.items():
            role = security.find_role(role_name)
            user = security.find_user(username=login)
            if user is None:
                user = security.add_user(
                    login, login, "warehouse", f"{login}@warehouse.invalid", role, passwords[login]
                )
                if not user:
                    raise RuntimeError(f"FAB could not create the login {login}")
            else:
                user.roles = [role]
                security.update_user(user)
                security.reset_password(user.id, passwords[login])
            done.append(f"{login} ({role_name})")
    return done


if __name__ == "__main__":
    (path,) = sys.argv[1:]
    print("logins:", ", ".join(sync_logins(json.loads(Path(path).read_text()))))
