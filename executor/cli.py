"""The ``computebus`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import uvloop

from executor import client
from executor.settings import Settings, SettingsError
from executor.signals import stop_on_signals

DEFAULT_API = "http://127.0.0.1:8080"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="computebus", description="A function executor on NATS.")
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

    d = sub.add_parser("deploy", help="pack a folder and create a function from it")
    d.add_argument("dir", type=Path)
    d.add_argument("--collection", required=True)
    d.add_argument("--name", required=True)
    d.add_argument("--handler")
    d.add_argument("--runtime", choices=["nodejs", "python"])
    d.add_argument("--schema-in", type=Path)
    d.add_argument("--schema-out", type=Path)
    d.add_argument("--timeout", type=int, help="milliseconds")

    i = sub.add_parser("invoke", help="invoke COLLECTION/NAME with a JSON payload")
    i.add_argument("ref")
    i.add_argument("payload", nargs="?", default="null")
    i.add_argument("--async", dest="asynchronous", action="store_true")
    i.add_argument(
        "--idempotency-key", help="with --async: the same key runs once and names one invocation"
    )

    sub.add_parser("ls", help="list functions")
    lg = sub.add_parser("logs", help="recent invocations of COLLECTION/NAME with their logs")
    lg.add_argument("ref")
    lg.add_argument("--limit", type=int, default=20)

    b = sub.add_parser("bench", help="invoke throughput and latency beside bare baselines")
    b.add_argument("--seconds", type=float, default=5.0, help="length of each throughput phase")
    b.add_argument("--concurrency", type=int, default=32)
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

    for p in (d, i, sub.choices["ls"], lg):
        p.add_argument("--api", default=os.environ.get("COMPUTEBUS_API", DEFAULT_API))
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(os.environ).with_overrides(
        nats_url=getattr(args, "nats_url", None),
        data_dir=getattr(args, "data_dir", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
    )


def _run(main: Coroutine[Any, Any, int | None]) -> int:
    return uvloop.run(main) or 0


async def _with_stop(role: str, settings: Settings) -> int:
    from executor.roles import run_api, run_worker
    from executor.serve import serve

    stop = asyncio.Event()
    stop_on_signals(stop)
    if role == "serve":
        return await serve(settings, stop)
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("COMPUTEBUS_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per client request
    try:
        if args.command in ("serve", "api", "worker"):
            return _run(_with_stop(args.command, _settings(args)))
        if args.command == "bench" and args.async_:
            from executor.bench_async import run_async_bench

            return _run(run_async_bench(count=args.count, workers=args.workers))
        if args.command == "bench" and args.flood:
            from executor.bench_flood import run_flood_bench

            return _run(run_flood_bench(clients=args.clients, samples=args.samples))
        if args.command == "bench" and args.sandbox:
            from executor.bench_sandbox import run_sandbox_bench

            return _run(run_sandbox_bench())
        if args.command == "bench":
            from executor.bench import run_bench

            return _run(
                run_bench(seconds=args.seconds, concurrency=args.concurrency, samples=args.samples)
            )
        if args.command == "deploy":
            client.emit(
                client.deploy(
                    args.api,
                    args.dir,
                    collection=args.collection,
                    name=args.name,
                    handler=args.handler,
                    runtime=args.runtime,
                    schema_in=args.schema_in,
                    schema_out=args.schema_out,
                    timeout=args.timeout,
                )
            )
        elif args.command == "invoke":
            client.emit(
                client.invoke(
                    args.api,
                    args.ref,
                    args.payload,
                    asynchronous=args.asynchronous,
                    idempotency_key=args.idempotency_key,
                )
            )
        elif args.command == "ls":
            print("\n".join(client.ls(args.api)))
        elif args.command == "logs":
            print("\n".join(client.logs(args.api, args.ref, args.limit)))
    except (SettingsError, client.ClientError, RuntimeError) as exc:
        print(f"computebus: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
