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
    password: Optional[str] = typer.Option(
        None, "--password", envvar="HANGAR_SERVER_PASSWORD", show_envvar=True,
        help="Require this password for push (visible to other users in `ps`: prefer the environment "
             "variable or --password-file)."),
    password_file: Optional[str] = typer.Option(
        None, "--password-file", help="Read the push password from the first line of this file."),
    tls_cert: Optional[str] = typer.Option(None, "--tls-cert", help="Serve HTTPS with this PEM certificate."),
    tls_key: Optional[str] = typer.Option(None, "--tls-key", help="Private key (PEM) of --tls-cert."),
) -> None:
    """Serve the repository at PATH until stopped (Ctrl-C / SIGTERM).

    Example: hangar server --ip 127.0.0.1 --port 50051 --path /data/repo
    (with --tls-cert/--tls-key, clients use the address https://IP:PORT)
    """
    from hangar.remote.server import read_password_file, run_server

    if password_file is not None:
        if password is not None:
            raise typer.BadParameter("give the password once: --password (or HANGAR_SERVER_PASSWORD) or "
                                     "--password-file, not both", param_hint="--password-file")
        try:
            password = read_password_file(password_file)
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(str(exc), param_hint="--password-file") from exc

    run_server(path=path, ip=ip, port=port, username=username, password=password, tls_cert=tls_cert,
               tls_key=tls_key)
