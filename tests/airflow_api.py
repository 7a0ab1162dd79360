"""Airflow's REST API (v2) as the tests call it, with a JWT from the FAB auth manager's
`POST /auth/token` (JSON username and password; 201 with access_token)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


class ApiError(RuntimeError):
    """A call that did not succeed: `METHOD path: HTTP code detail`."""


class ApiClient:
    def __init__(self, url: str, username: str, password: str):
        self.url = url
        token = self._call("POST", "/auth/token", {"username": username, "password": password})
        self._token = token["access_token"]

    def _call(self, method: str, path: str, body: dict | None = None, auth: bool = False):
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        if auth:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:500]
            raise ApiError(f"{method} {path}: HTTP {error.code} {detail}") from None

    def get(self, path: str):
        return self._call("GET", path, auth=True)

    def post(self, path: str, body: dict):
        return self._call("POST", path, body, auth=True)

    def dag_runs(self, dag_id: str) -> list[dict]:
        return self.get(f"/api/v2/dags/{dag_id}/dagRuns?order_by=-start_date")["dag_runs"]
