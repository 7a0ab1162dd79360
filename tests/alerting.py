"""A real SMTP server on 127.0.0.1 (aiosmtpd) and a local HTTP endpoint for the webhook, which
keep what they receive, and the settings and connections that point a run at them."""

from __future__ import annotations

import contextlib
import dataclasses
import email
import email.policy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import free_ports
from warehouse.settings import Settings

RECIPIENTS = "data-team@example.com, oncall@example.com"
WEBHOOK_CONN = "warehouse_alert_webhook"


class Inbox:
    """The messages an SMTP server received, as (subject, text) in order."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's handler hook
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(message)
        return "250 OK"

    def texts(self) -> list[tuple[str, str]]:
        found = []
        for message in self.messages:
            part = message.get_body(("html", "plain"))
            found.append((str(message["Subject"]), part.get_content() if part else ""))
        return found


@contextlib.contextmanager
def smtp_server():
    """An SMTP server on 127.0.0.1; yields (its port, its Inbox)."""
    from aiosmtpd.controller import Controller

    (port,) = free_ports(1)
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


@contextlib.contextmanager
def webhook_server(status: int = 200):
    """An HTTP endpoint on 127.0.0.1 answering `status`; yields (its port, the JSON bodies)."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()


def smtp_uri(port: int) -> str:
    """Airflow's smtp_default connection for a plain local server, with short timeouts."""
    return (
        f"smtp://127.0.0.1:{port}?disable_ssl=true&disable_tls=true&timeout=5&retry_limit=0"
        "&from_email=warehouse%40example.com"
    )


def alerting(settings: Settings, webhook: bool = False) -> Settings:
    """`settings` with alert recipients (and the webhook's connection)."""
    return dataclasses.replace(
        settings, alert_email=RECIPIENTS, alert_webhook_conn=WEBHOOK_CONN if webhook else None
    )


def connections(smtp_port: int, webhook_port: int | None = None) -> dict[str, str]:
    """The environment variables that define the connections (as an operator would set them)."""
    env = {"AIRFLOW_CONN_SMTP_DEFAULT": smtp_uri(smtp_port)}
    if webhook_port is not None:
        # The whole URL as the host: HttpHook reads a URI's path as its scheme.
        env[f"AIRFLOW_CONN_{WEBHOOK_CONN.upper()}"] = json.dumps(
            {"conn_type": "http", "host": f"http://127.0.0.1:{webhook_port}/alerts"}
        )
    return env
