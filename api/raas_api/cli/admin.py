"""``raas admin token create|list|revoke``: API tokens, where the server keeps them.

Locally that is the server's data folder (``--data-dir``); with ``RAAS_BACKEND=kubernetes`` (in
the API's pod: ``kubectl exec deploy/raas-api -- raas admin token create --owner ada``) the
cluster's Secrets."""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raas_api.auth.tokens import Role, Tokens


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("admin", help="server administration: API tokens")
    parser.add_argument("--data-dir", type=Path, default=None, help="the server's data folder (default: raas-data)")
    actions = parser.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    token = actions.add_parser("token", help="create, list or revoke API tokens")
    token_actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_actions.add_parser("create", help="a new token (printed once; stored hashed)")
    create.add_argument("--owner", required=True, help="who the token speaks for (lowercase, digits, '-')")
    create.add_argument("--admin", action="store_true", help="an admin token (cancel any job, robot maintenance)")
    create.set_defaults(handler=functools.partial(run_admin, _create))
    listing = token_actions.add_parser("list", help="every token (ids and owners, never secrets)")
    listing.set_defaults(handler=functools.partial(run_admin, _list))
    revoke = token_actions.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id")
    revoke.set_defaults(handler=functools.partial(run_admin, _revoke))


def _store(arguments: argparse.Namespace) -> Tokens:
    from raas_api.http.app import token_store
    from raas_api.settings import ApiSettings

    settings = ApiSettings() if arguments.data_dir is None else ApiSettings(data_dir=Path(arguments.data_dir))
    return token_store(settings)


def run_admin(handler: Callable[[argparse.Namespace], int], arguments: argparse.Namespace) -> int:
    """`handler`, with a damaged token file reported in one sentence instead of a traceback."""
    from raas_api.stores.sqlite_files import DamagedStoreError

    try:
        return handler(arguments)
    except DamagedStoreError as error:
        print(f"raas: error: {error}")
        return 2


def _create(arguments: argparse.Namespace) -> int:
    from raas_api.cli.isolation_choice import noted_isolation, strangers_refusal
    from raas_api.settings import SESSION_OWNER, ApiSettings, Backend

    settings = ApiSettings() if arguments.data_dir is None else ApiSettings(data_dir=Path(arguments.data_dir))
    if settings.backend is Backend.LOCAL and arguments.owner != SESSION_OWNER:
        refusal = strangers_refusal(noted_isolation(settings.data_dir), {arguments.owner})
        if refusal is not None:
            print(f"raas: error: {refusal}")
            return 2
    store = _store(arguments)
    try:
        token, info = store.create(arguments.owner, Role.ADMIN if arguments.admin else Role.USER)
    except ValueError as error:
        print(f"raas: error: {error}")
        return 2
    finally:
        store.close()
    print(token)
    print(f"(id {info.token_id}, owner {info.owner}, role {info.role.value}; shown once, stored hashed)")
    return 0


def _list(arguments: argparse.Namespace) -> int:
    store = _store(arguments)
    try:
        for info in store.list_tokens():
            state = "revoked" if info.revoked else "active"
            print(f"{info.token_id}  {info.owner:<20} {info.role.value:<6} {state:<8} {info.created_at:%Y-%m-%d %H:%M}")
    finally:
        store.close()
    return 0


def _revoke(arguments: argparse.Namespace) -> int:
    store = _store(arguments)
    try:
        found = store.revoke(arguments.token_id)
    finally:
        store.close()
    print(f"revoked {arguments.token_id}" if found else f"raas: error: no token {arguments.token_id}")
    return 0 if found else 1
