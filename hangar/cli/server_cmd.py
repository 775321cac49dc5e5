"""``hangar server``: serve a repository (history over git smart HTTP, plus data sync)."""

from __future__ import annotations

from typing import Optional

import typer

from hangar.cli.app import app


@app.command("server")
def server(
    ip: str = typer.Option("127.0.0.1", "--ip", help="Address to listen on."),
    port: int = typer.Option(50051, "--port", help="Port to listen on."),
    path: str = typer.Option(".", "--path", help="Repository directory (created if empty)."),
    username: Optional[str] = typer.Option(None, "--username", help="Require this user for push."),
    password: Optional[str] = typer.Option(None, "--password", help="Require this password for push."),
    tls_cert: Optional[str] = typer.Option(None, "--tls-cert", help="Serve HTTPS with this PEM certificate."),
    tls_key: Optional[str] = typer.Option(None, "--tls-key", help="Private key (PEM) of --tls-cert."),
) -> None:
    """Serve the repository at PATH until stopped (Ctrl-C / SIGTERM).

    Example: hangar server --ip 127.0.0.1 --port 50051 --path /data/repo
    (with --tls-cert/--tls-key, clients use the address https://IP:PORT)
    """
    from hangar.remote.server import run_server

    run_server(path=path, ip=ip, port=port, username=username, password=password, tls_cert=tls_cert,
               tls_key=tls_key)
