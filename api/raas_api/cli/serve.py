"""``raas serve``: the local platform with the REST API and the web page.

Prints ``RaaS API listening on http://HOST:PORT`` and ``admin token: <token>`` first: each start
issues a fresh admin token for this session (revoking the previous session's), since stored
tokens are hashed and cannot be shown again. ``--save-login`` writes the server and token into
the CLI's config file so that ``raas submit`` and friends need no flags.

Users' programs run in podman containers wherever rootful podman works (`isolation_choice`);
``--isolation process`` is for one trusted developer, prints what it does not protect, and
refuses to start while other people hold active tokens. The data folder is made private (0700)
and its SQLite files are checked before anything is printed: a damaged one stops the server with
one sentence naming it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from raas_api.auth.tokens import Role, Tokens
from raas_api.cli.isolation_choice import (
    PROCESS_LEVEL_NOTICE,
    choose_isolation,
    note_isolation,
    strangers_refusal,
)
from raas_api.local.platform import Isolation
from raas_api.local.robots import RobotKind
from raas_api.settings import SESSION_OWNER


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("serve", help="start the local platform with the REST API and the web page")
    parser.add_argument("--data-dir", type=Path, default=None, help="jobs, tokens and results (default: raas-data)")
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="TCP port (default 8000; 0 picks a free one)")
    parser.add_argument("--robots", type=int, default=None, help="simulated robots (default 3)")
    parser.add_argument("--robot-kind", choices=[kind.value for kind in RobotKind], default=None)
    parser.add_argument(
        "--isolation",
        choices=[isolation.value for isolation in Isolation],
        default=None,
        help="how users' programs are contained (default: container where rootful podman works, else process)",
    )
    parser.add_argument("--save-login", action="store_true", help="write server and token to the CLI config file")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    import uvicorn

    from raas_api.http.app import create_app, token_store
    from raas_api.settings import ApiSettings, Backend
    from raas_api.stores.sqlite_files import DamagedStoreError
    from raas_node.runner.launch import SandboxUnavailableError

    overrides = {
        name: value
        for name, value in (
            ("data_dir", arguments.data_dir),
            ("host", arguments.host),
            ("port", arguments.port),
            ("robots", arguments.robots),
            ("robot_kind", arguments.robot_kind),
        )
        if value is not None
    }
    settings = ApiSettings(**overrides)
    local = settings.backend is Backend.LOCAL
    if local:
        settings = settings.model_copy(update={"isolation": choose_isolation(arguments.isolation)})
        if settings.isolation is Isolation.CONTAINER:
            # The job image is built (once per machine, minutes) before the address is printed, so
            # that a printed address answers at once rather than after the build.
            from raas_node.runner.image import ensure_runtime_image

            print("preparing the job container image (cached after the first start)", file=sys.stderr, flush=True)
            ensure_runtime_image()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.data_dir.chmod(0o700)  # tokens.db is opened before the platform makes it private too
    try:
        tokens = token_store(settings)
        refusal = strangers_refusal(settings.isolation, _strangers(tokens)) if local else None
        if refusal is not None:
            tokens.close()
            print(f"raas serve: {refusal}", file=sys.stderr)
            return 2
        # Made before the address is printed: a damaged jobs.db stops the server here, in one sentence.
        app = create_app(settings, tokens=tokens)
    except (DamagedStoreError, SandboxUnavailableError) as error:
        print(f"raas serve: {error}", file=sys.stderr)
        return 2
    # Locally each start issues a session admin token; a cluster's replicas share the bootstrap one.
    token = _session_token(tokens) if local else None
    if local:
        note_isolation(settings.data_dir, settings.isolation)
    listener = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without, a response written in two parts waits ~40 ms for
    # the client's delayed ACK (Nagle), which capped the server at ~25 sequential requests/s.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind((settings.host, settings.port))
    listener.listen(2048)  # from here on a client's connection waits in the backlog, never refused
    port = listener.getsockname()[1]
    url = f"http://{settings.host}:{port}"
    print(f"RaaS API listening on {url}", flush=True)
    if token is None:
        print("admin token: the bootstrap token (RAAS_ADMIN_TOKEN)", flush=True)
    else:
        print(f"admin token: {token}", flush=True)
        print(f"web page: {url}/#token={token}", flush=True)
        if arguments.save_login:
            print(f"saved login to {_save_login(url, token)}", flush=True)
    if local and settings.isolation is Isolation.PROCESS:
        print(PROCESS_LEVEL_NOTICE, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5))
    try:
        server.run(sockets=[listener])
    finally:
        tokens.close()
    return 0


def _strangers(tokens: Tokens) -> set[str]:
    """Owners of active tokens other than the serving session's."""
    return {info.owner for info in tokens.list_tokens() if not info.revoked and info.owner != SESSION_OWNER}


def _session_token(tokens: Tokens) -> str:
    for info in tokens.list_tokens():
        if info.owner == SESSION_OWNER and info.role is Role.ADMIN and not info.revoked:
            tokens.revoke(info.token_id)
    token, _ = tokens.create(SESSION_OWNER, Role.ADMIN)
    return token


def _save_login(url: str, token: str) -> Path:
    folder = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "raas"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps({"server": url, "token": token}, indent=2) + "\n")
    path.chmod(0o600)
    return path


if __name__ == "__main__":
    sys.exit(
        run(
            argparse.Namespace(
                data_dir=None, host=None, port=None, robots=None, robot_kind=None, isolation=None, save_login=False
            )
        )
    )
