"""The ``computebus`` command."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import uvloop

from executor.cli_args import parse_args
from executor.client import deploy
from executor.client import verbs as commands
from executor.client.api import Api, ClientError, FunctionFailed, find_token
from executor.log_format import configure_logging
from executor.settings import Settings, SettingsError, role_nats_url, unknown_settings
from executor.signals import stop_on_signals
from schemas.errors import SetupError

if TYPE_CHECKING:
    from executor.cluster import ClusterShape


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


async def _with_stop(role: str, settings: Settings, shape: ClusterShape | None = None) -> int:
    from executor.api.server import run_api
    from executor.serve import ensure_port_free, serve
    from executor.worker.start import run_worker

    if role in ("serve", "api", "cluster"):
        ensure_port_free(settings.host, settings.port)

    stop = asyncio.Event()
    on_force = stop_on_signals(stop, role)
    if role == "serve":
        return await serve(settings, stop, on_force)
    if role == "cluster":
        from executor.cluster import run_cluster

        assert shape is not None
        return await run_cluster(shape, settings, stop, on_force)
    if not settings.nats_url:
        raise SettingsError(f"`computebus {role}` needs --nats-url or NATS_URL")
    url = role_nats_url(settings, role)
    if role == "api":
        await run_api(
            url,
            settings,
            stop,
            on_ready=lambda url: print(f"computebus api ready api={url}", flush=True),
        )
    else:
        await run_worker(url, settings, stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        configure_logging(os.environ)
    except SettingsError as exc:
        print(f"computebus: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command in ("serve", "api", "worker"):
            return _run(_with_stop(args.command, _settings(args)))
        if args.command == "nats-config":
            from executor.nats_config import server_names, write_cluster_config

            names = server_names(args.servers, args.name)
            _lines([str(p) for p in write_cluster_config(args.out, names, args.store_dir)])
            return 0
        if args.command == "cluster":
            from executor.cluster import ClusterShape

            shape = ClusterShape(args.servers, args.apis, args.workers, args.nats_port)
            return _run(_with_stop("cluster", _settings(args), shape))
        if args.command == "bench" and args.async_:
            from executor.bench.async_throughput import run_async_bench

            return _run(
                run_async_bench(count=args.count, workers=args.workers, cluster=args.cluster)
            )
        if args.command == "bench" and args.functions is not None:
            from executor.bench.scale import run_scale_bench

            return _run(
                run_scale_bench(
                    functions=args.functions,
                    samples=min(args.samples, 300),
                    warm=args.warm,
                    idle_s=args.idle_s,
                )
            )
        if args.command == "bench" and args.flood:
            from executor.bench.flood import run_flood_bench

            return _run(run_flood_bench(clients=args.clients, samples=args.samples))
        if args.command == "bench" and args.cold:
            from executor.bench.cold_start import run_cold_bench

            return _run(run_cold_bench(rounds=args.rounds))
        if args.command == "bench" and args.sandbox:
            from executor.bench.sandbox_cost import run_sandbox_bench

            return _run(run_sandbox_bench())
        if args.command == "bench":
            from executor.bench.invoke import run_bench

            return _run(
                run_bench(
                    seconds=args.seconds,
                    concurrency=args.concurrency,
                    samples=args.samples,
                    cluster_workers=args.workers if args.cluster else 0,
                )
            )
        if args.command in _CLIENT_VERBS:
            token = find_token(args.token, os.environ)
            timeout = None if args.command == "invoke" else 120
            with Api(args.api, token=token, timeout=timeout) as api:
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
    "token",
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
            record = commands.status(api, args.ref, args.invocation_id)
            _emit(record)  # with its logs and error: what a failure is looked up for
            commands.raise_if_failed(record, args.invocation_id)
        case "dead-letters":
            _emit(commands.dead_letters(api, args.ref, args.limit))
        case "retry":
            _emit(commands.retry(api, args.ref, args.invocation_id))
        case "token":
            _emit(commands.token(api, args.action, args.name_or_id, args.scopes, args.expires_in))
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


if __name__ == "__main__":
    sys.exit(main())
