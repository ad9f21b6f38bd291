"""The `inferbox` command: serve, token, tenant, model-server."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from inferbox import __version__
from inferbox.config import ConfigError, Settings, ensure_jwt_secret, from_env


def _settings() -> Settings:
    return ensure_jwt_secret(from_env())


def _exit_cleanly(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def cmd_serve(_args: argparse.Namespace) -> int:
    import uvicorn

    from inferbox import logs
    from inferbox.app import create_app
    from inferbox.assembly import build
    from inferbox.auth.admin import ensure_admin

    settings = _settings()
    recent = logs.setup(settings.log_level, settings.log_json)
    platform = build(settings, recent)
    generated = ensure_admin(platform.store, settings.admin_username, settings.admin_password)
    if generated:
        # Printed once, never logged; only its hash is stored.
        print(
            f"inferbox: generated admin password for '{settings.admin_username}': {generated}\n"
            "inferbox: it is shown only now; set ADMIN_PASSWORD to choose your own.",
            flush=True,
        )
    app = create_app(platform)
    # uvicorn re-raises the signal that stopped it once its graceful shutdown is done; with this handler
    # in place that ends the process with exit code 0 instead of death by SIGTERM (a clean stop is not a
    # crash to a supervisor), and a signal that comes before uvicorn listens still stops the process.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=30,
        **settings.server_options(),
    )
    return 0


def cmd_gateway(_args: argparse.Namespace) -> int:
    """A gateway alone: serves published models from the shared store; several may run, sharing
    rate limits through Redis (REDIS_URL)."""
    import asyncio
    import signal

    from inferbox import logs
    from inferbox.assembly import standalone_gateway

    settings = _settings()
    logs.setup(settings.log_level, settings.log_json)
    store, service = standalone_gateway(settings)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await service.start()
        try:
            await stop.wait()
        finally:
            await service.stop()
            store.close()

    asyncio.run(run())
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from inferbox.assembly import token_service

    print(token_service(_settings()).issue_tenant(args.tenant, subject=args.subject, ttl=args.ttl))
    return 0


def cmd_tenant(args: argparse.Namespace) -> int:
    import asyncio
    import getpass

    from inferbox.assembly import open_store
    from inferbox.control.audit import Actor, AuditLog
    from inferbox.control.errors import ControlError, InvalidField
    from inferbox.control.tenant_admin import TenantAdmin
    from inferbox.control.tenants import TenantDirectory

    settings = _settings()
    store = open_store(settings)
    directory = TenantDirectory(store)
    if args.action == "list":
        for tenant in directory.list():
            print(f"{tenant.name}\t{tenant.status}\t{tenant.created.isoformat()}")
        return 0
    if not args.name:
        print(f"inferbox tenant {args.action}: NAME is required", file=sys.stderr)
        return 2
    audit = AuditLog(store)
    # Without a runtime here, a tenant that still owns models is refused (its replicas must be stopped
    # by the control plane that runs them: DELETE /api/admin/tenants/NAME?force=true).
    admin = TenantAdmin(directory, audit)
    actor = Actor(f"cli:{getpass.getuser()}", None, None)
    try:
        if args.action == "create":
            admin.create(args.name, actor)
        else:
            asyncio.run(admin.delete(args.name, actor, force=False))
    except InvalidField as exc:
        print(f"inferbox: tenant name {args.name!r}: {exc.details}", file=sys.stderr)
        return 2
    except ControlError as exc:
        print(f"inferbox: {exc.details}", file=sys.stderr)
        return 1
    finally:
        audit.close()
    print(f"tenant {args.name} {'created' if args.action == 'create' else 'deleted'}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inferbox", description="Inference in a box.")
    p.add_argument("--version", action="version", version=f"inferbox {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("serve", help="run the control plane (with the local runtime)").set_defaults(
        func=cmd_serve
    )

    sub.add_parser("gateway", help="run a gateway alone (published models only)").set_defaults(
        func=cmd_gateway
    )

    token = sub.add_parser("token", help="print a tenant JWT signed with the configured secret")
    token.add_argument("--tenant", required=True)
    token.add_argument("--subject", default=None, help="the token's sub claim (default: TENANT-user)")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")
    token.set_defaults(func=cmd_token)

    tenant = sub.add_parser("tenant", help="create, list or delete tenants in the store")
    tenant.add_argument("action", choices=["create", "list", "delete"])
    tenant.add_argument("name", nargs="?")
    tenant.set_defaults(func=cmd_tenant)

    # Listed for --help; `main` hands its words to the model server's own parser.
    sub.add_parser("model-server", help="run one model replica (KServe V1 and V2 protocols)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["model-server"]:
        # The model server parses its own options (argparse's REMAINDER would not take `--name …`).
        from inferbox.server.cli import main as server_main

        return server_main(words[1:])
    args = parser().parse_args(words)
    from inferbox.runtime.base import RuntimeLocked

    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"inferbox: configuration error: {exc}", file=sys.stderr)
        return 2
    except RuntimeLocked as exc:
        print(f"inferbox: cannot start: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
