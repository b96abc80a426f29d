"""The ``computebus`` command."""

from __future__ import annotations

import argparse
import asyncio
import difflib
import importlib.metadata
import json
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import uvloop

from executor.client import deploy
from executor.client import verbs as commands
from executor.client.api import Api, ClientError, FunctionFailed
from executor.settings import Settings, SettingsError, unknown_settings
from executor.signals import stop_on_signals
from schemas.errors import SetupError

DEFAULT_API = "http://127.0.0.1:8080"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="computebus", description="A function executor on NATS.")
    parser.add_argument("--version", action="version", version=f"computebus {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def server_flags(p: argparse.ArgumentParser, http: bool) -> None:
        p.add_argument("--nats-url", help="use this NATS instead of an embedded one (or NATS_URL)")
        p.add_argument("--data-dir", type=Path, help="state directory (default ./.computebus)")
        if http:
            p.add_argument("--host", help="HTTP listen address (default 127.0.0.1)")
            p.add_argument("--port", type=int, help="HTTP port (default 8080, 0 = any free port)")

    server_flags(sub.add_parser("serve", help="embedded NATS + API + worker, all in one"), True)
    server_flags(sub.add_parser("api", help="the HTTP API alone, against --nats-url"), True)
    server_flags(sub.add_parser("worker", help="a worker alone, against --nats-url"), False)

    api_flag = argparse.ArgumentParser(add_help=False)
    api_flag.add_argument(
        "--api",
        default=os.environ.get("COMPUTEBUS_API", DEFAULT_API),
        help=f"the computebus API (default $COMPUTEBUS_API or {DEFAULT_API})",
    )

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, parents=[api_flag])

    d = verb("deploy", "create a function from a folder, or update it (a new revision)")
    d.add_argument("dir", type=Path, help="the function's folder (its computebus.toml is read)")
    d.add_argument("--collection", help="its collection (or collection in computebus.toml)")
    d.add_argument("--name", help="its name in the collection")
    d.add_argument("--handler", help="FILE.EXPORT, e.g. index.handler (default: guessed)")
    d.add_argument("--runtime", choices=["nodejs", "python"], help="default: from the handler")
    d.add_argument("--schema-in", type=Path, help="a JSON Schema file for its input")
    d.add_argument("--schema-out", type=Path, help="a JSON Schema file for its output")
    d.add_argument("--timeout", type=int, help="milliseconds (default 30000)")
    d.add_argument("--size", help="memory tier: 128MB 256MB 512MB 1024MB 2048MB 4096MB")
    d.add_argument("--ttl", type=int, help="how long its records are kept, ms (default 7 days)")
    d.add_argument(
        "--no-store-payload",
        dest="store_payload",
        action="store_const",
        const=False,
        help="keep input and output out of its records",
    )
    d.add_argument("--async-retries", type=int, help="Async retries after a failure (0-19)")
    d.add_argument("--description", help="a line about what it does")
    d.add_argument(
        "--env",
        action="append",
        metavar="KEY=VALUE",
        help="an environment variable (repeat; replaces the function's set)",
    )
    d.add_argument(
        "--stage", action="store_true", help="make the new revision without promoting it"
    )

    i = verb("invoke", "invoke COLLECTION/NAME and print its result")
    i.add_argument("ref", help="COLLECTION/NAME (or COLLECTION/SERVICE_ID)")
    i.add_argument("payload", nargs="?", help="JSON, @FILE, or - for stdin (default null)")
    i.add_argument("--async", dest="asynchronous", action="store_true", help="queue it (202)")
    i.add_argument(
        "--idempotency-key", help="with --async: the same key runs once and names one invocation"
    )
    i.add_argument("--alias", help="run the revision this alias names (default production)")
    i.add_argument("--revision", type=int, help="run this revision")
    i.add_argument("--timeout", type=int, help="milliseconds, at most the function's own")

    verb("ls", "list functions")
    for name, help in (
        ("describe", "show a function: its settings, revision, aliases"),
        ("rm", "delete a function (its revisions, records stay until their TTL)"),
        ("revisions", "list a function's revisions and the aliases on each"),
    ):
        verb(name, help).add_argument("ref", help="COLLECTION/NAME")
    pr = verb("promote", "point an alias (production) at a revision")
    pr.add_argument("ref", help="COLLECTION/NAME")
    pr.add_argument("revision", type=int, help="the revision number")
    pr.add_argument("--alias", default="production", help="default production")
    pr.add_argument("--force", action="store_true", help="past the schema compatibility gate")
    rb = verb("rollback", "point an alias back at the revision before the one it names")
    rb.add_argument("ref", help="COLLECTION/NAME")
    rb.add_argument("--alias", default="production", help="default production")
    st = verb("status", "show one invocation's record (exit 1 if it failed)")
    st.add_argument("ref", help="COLLECTION/NAME")
    st.add_argument("invocation_id", help="as the invoke answered (X-Invocation-Id)")
    dl = verb("dead-letters", "list Async invocations that failed for good")
    dl.add_argument("ref", help="COLLECTION/NAME")
    dl.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    rt = verb("retry", "send a dead-lettered Async invocation again")
    rt.add_argument("ref", help="COLLECTION/NAME")
    rt.add_argument("invocation_id", help="a dead letter's invocation_id")
    lg = verb("logs", "recent invocations of COLLECTION/NAME with their logs")
    lg.add_argument("ref", help="COLLECTION/NAME")
    lg.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    lg.add_argument("--status", choices=["succeeded", "failed"], help="only these")
    lg.add_argument(
        "--follow", "-f", action="store_true", help="keep printing new ones (Ctrl-C stops)"
    )

    b = sub.add_parser("bench", help="invoke throughput and latency beside bare baselines")
    b.add_argument("--seconds", type=float, default=5.0, help="length of each throughput phase")
    b.add_argument("--concurrency", type=int, default=32, help="calls in flight at once")
    b.add_argument("--samples", type=int, default=2000, help="sequential calls for p50/p99")
    b.add_argument(
        "--sandbox", action="store_true", help="instead: sandbox cost per process, cold and warm"
    )
    b.add_argument(
        "--async",
        dest="async_",
        action="store_true",
        help="instead: sustained Async throughput beside a bare JetStream work queue",
    )
    b.add_argument(
        "--flood",
        action="store_true",
        help="instead: a function's latency alone and while another one is flooded",
    )
    b.add_argument("--clients", type=int, default=300, help="with --flood: flood clients")
    b.add_argument("--count", type=int, default=2000, help="Async invocations to push through")
    b.add_argument("--workers", type=int, default=1, help="with --async: workers to run")

    return parser


def _settings(args: argparse.Namespace) -> Settings:
    for warning in unknown_settings(os.environ):
        logging.getLogger("computebus").warning("%s", warning)
    return Settings.from_env(os.environ).with_overrides(
        nats_url=getattr(args, "nats_url", None),
        data_dir=getattr(args, "data_dir", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
    )


def _run(main: Coroutine[Any, Any, int | None]) -> int:
    return uvloop.run(main) or 0


async def _with_stop(role: str, settings: Settings) -> int:
    from executor.api.server import run_api
    from executor.serve import ensure_port_free, serve
    from executor.worker.start import run_worker

    if role in ("serve", "api"):
        ensure_port_free(settings.host, settings.port)

    stop = asyncio.Event()
    on_force = stop_on_signals(stop, role)
    if role == "serve":
        return await serve(settings, stop, on_force)
    if not settings.nats_url:
        raise SettingsError(f"`computebus {role}` needs --nats-url or NATS_URL")
    if role == "api":
        await run_api(
            settings.nats_url,
            settings,
            stop,
            on_ready=lambda url: print(f"computebus api ready api={url}", flush=True),
        )
    else:
        await run_worker(settings.nats_url, settings, stop)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments; an unknown flag is the verb's own error, with the nearest flag named."""
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        verbs = parser._subparsers._group_actions[0].choices if parser._subparsers else None
        verb = verbs.get(args.command) if isinstance(verbs, dict) else None
        where = verb if isinstance(verb, argparse.ArgumentParser) else parser
        flags = [flag for action in where._actions for flag in action.option_strings]
        near = difflib.get_close_matches(unknown[0], flags, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        where.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(
        level=os.environ.get("COMPUTEBUS_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per client request
    try:
        if args.command in ("serve", "api", "worker"):
            return _run(_with_stop(args.command, _settings(args)))
        if args.command == "bench" and args.async_:
            from executor.bench.async_throughput import run_async_bench

            return _run(run_async_bench(count=args.count, workers=args.workers))
        if args.command == "bench" and args.flood:
            from executor.bench.flood import run_flood_bench

            return _run(run_flood_bench(clients=args.clients, samples=args.samples))
        if args.command == "bench" and args.sandbox:
            from executor.bench.sandbox_cost import run_sandbox_bench

            return _run(run_sandbox_bench())
        if args.command == "bench":
            from executor.bench.invoke import run_bench

            return _run(
                run_bench(seconds=args.seconds, concurrency=args.concurrency, samples=args.samples)
            )
        if args.command in _CLIENT_VERBS:
            with Api(args.api, timeout=None if args.command == "invoke" else 120) as api:
                _client_verb(api, args)
    except FunctionFailed as exc:
        print(f"computebus: {exc}", file=sys.stderr)
        return 1
    except (SetupError, ClientError) as exc:
        print(f"computebus: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


_CLIENT_VERBS = (
    "deploy",
    "invoke",
    "ls",
    "describe",
    "rm",
    "revisions",
    "promote",
    "rollback",
    "status",
    "dead-letters",
    "retry",
    "logs",
)


def _client_verb(api: Api, args: argparse.Namespace) -> None:
    match args.command:
        case "deploy":
            flags = {
                "collection": args.collection,
                "name": args.name,
                "handler": args.handler,
                "runtime": args.runtime,
                "timeout": args.timeout,
                "size": args.size,
                "ttl": args.ttl,
                "store_payload": args.store_payload,
                "async_retries": args.async_retries,
                "description": args.description,
                "schema_in": args.schema_in,
                "schema_out": args.schema_out,
                "env": _env_flags(args.env),
                "stage": args.stage,
            }
            _emit(deploy.deploy(api, args.dir, deploy.options(args.dir, flags)))
        case "invoke":
            _emit(
                commands.invoke(
                    api,
                    args.ref,
                    commands.read_payload(args.payload),
                    asynchronous=args.asynchronous,
                    idempotency_key=args.idempotency_key,
                    alias=args.alias,
                    revision=args.revision,
                    timeout_ms=args.timeout,
                )
            )
        case "ls":
            _lines(commands.ls(api))
        case "describe":
            _emit(commands.describe(api, args.ref))
        case "rm":
            _emit(commands.remove(api, args.ref))
        case "revisions":
            _lines(commands.revisions(api, args.ref))
        case "promote":
            _emit(
                commands.promote(api, args.ref, args.revision, alias=args.alias, force=args.force)
            )
        case "rollback":
            _emit(commands.rollback(api, args.ref, alias=args.alias))
        case "status":
            _emit(commands.status(api, args.ref, args.invocation_id))
        case "dead-letters":
            _emit(commands.dead_letters(api, args.ref, args.limit))
        case "retry":
            _emit(commands.retry(api, args.ref, args.invocation_id))
        case "logs":
            follow = args.follow
            lines = commands.logs(
                api, args.ref, limit=args.limit, status_filter=args.status, follow=follow
            )
            for line in lines:
                print(line, flush=True)


def _env_flags(pairs: list[str] | None) -> dict[str, str] | None:
    if pairs is None:
        return None
    env = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ClientError(f"--env {pair!r}: expected KEY=VALUE")
        env[key] = value
    return env


def _emit(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _lines(rows: list[str]) -> None:
    if rows:
        print("\n".join(rows))


def _version() -> str:
    try:
        return importlib.metadata.version("computebus")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
