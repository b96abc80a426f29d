"""The ``computebus`` command line: every verb and its flags."""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import os
from collections.abc import Callable
from pathlib import Path

from schemas.ids import DEFAULT_ALIAS

DEFAULT_API = "http://127.0.0.1:8080"


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer no smaller than ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below the least, {low}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The arguments; an unknown flag is the verb's own error, with the nearest flag named."""
    parser, verbs = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        where = verbs.get(args.command, parser)
        flags = [flag for action in where._actions for flag in action.option_strings]
        near = difflib.get_close_matches(unknown[0], flags, n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        where.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    return args


def verb_parsers() -> dict[str, argparse.ArgumentParser]:
    """Each verb's own parser, by name."""
    return _parser()[1]


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
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
    nc = sub.add_parser(
        "nats-config",
        help="configs, credentials and callout key for nats-servers of a cluster (compose.yaml)",
    )
    nc.add_argument("--servers", type=int, default=3, help="how many servers (default 3)")
    nc.add_argument("--name", default="nats-{}", help="server host names (default nats-{})")
    nc.add_argument("--out", type=Path, required=True, help="where to write them")
    nc.add_argument(
        "--store-dir", type=Path, default=Path("/data"), help="each server's JetStream store"
    )
    c = sub.add_parser(
        "cluster", help="N nats-servers in one cluster, M APIs and K workers, on this machine"
    )
    c.add_argument(
        "--servers", type=at_least(2), default=3, help="nats-servers, 2 or more (default 3)"
    )
    c.add_argument(
        "--apis", type=at_least(1), default=2, help="computebus api processes (default 2)"
    )
    c.add_argument("--workers", type=at_least(0), default=2, help="computebus workers (default 2)")
    c.add_argument(
        "--nats-port", type=int, default=0, help="first server's client port (default: free)"
    )
    c.add_argument("--data-dir", type=Path, help="state directory (default ./.computebus)")
    c.add_argument("--host", help="HTTP listen address of the APIs (default 127.0.0.1)")
    c.add_argument("--port", type=int, help="first API's HTTP port (default 8080, 0 = free)")

    api_flag = argparse.ArgumentParser(add_help=False)
    api_flag.add_argument(
        "--api",
        default=os.environ.get("COMPUTEBUS_API", DEFAULT_API),
        help=f"the computebus API (default $COMPUTEBUS_API or {DEFAULT_API})",
    )
    api_flag.add_argument(
        "--token",
        help="API token (default $COMPUTEBUS_TOKEN, else .computebus/admin-token if present)",
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
    pr.add_argument("--alias", default=DEFAULT_ALIAS, help=f"default {DEFAULT_ALIAS}")
    pr.add_argument("--force", action="store_true", help="past the schema compatibility gate")
    rb = verb("rollback", "point an alias back at the revision before the one it names")
    rb.add_argument("ref", help="COLLECTION/NAME")
    rb.add_argument("--alias", default=DEFAULT_ALIAS, help=f"default {DEFAULT_ALIAS}")
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

    tk = verb("token", "create, list or revoke API tokens (needs an admin token)")
    tk.add_argument("action", choices=["create", "ls", "revoke"], help="what to do")
    tk.add_argument("name_or_id", nargs="?", help="create: the new token's name; revoke: its id")
    tk.add_argument(
        "--scope",
        action="append",
        dest="scopes",
        help="create: admin, or read|invoke|deploy:COLLECTIONS (team-*, *); repeatable",
    )
    tk.add_argument("--expires-in", type=int, help="create: seconds until it expires")
    b = sub.add_parser("bench", help="invoke throughput and latency beside bare baselines")
    b.add_argument("--seconds", type=float, default=5.0, help="length of each throughput phase")
    b.add_argument("--concurrency", type=int, default=32, help="calls in flight at once")
    b.add_argument("--samples", type=int, default=2000, help="sequential calls for p50/p99")
    b.add_argument(
        "--sandbox", action="store_true", help="instead: sandbox cost per process, cold and warm"
    )
    b.add_argument(
        "--cold",
        action="store_true",
        help="instead: cold start (create, then the first invoke) per runtime, whole and parts",
    )
    b.add_argument("--rounds", type=int, default=20, help="with --cold: functions per runtime")
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
    b.add_argument(
        "--functions",
        type=int,
        metavar="N",
        help="instead: register N functions (e.g. 10000); invoke p50, listing, new worker, RSS",
    )
    b.add_argument("--warm", type=int, default=200, help="with --functions: warm revisions to hold")
    b.add_argument(
        "--idle-s",
        type=float,
        default=15.0,
        help="with --functions: the stack's idle timeout, to show reaping (default 15)",
    )
    b.add_argument("--clients", type=int, default=300, help="with --flood: flood clients")
    b.add_argument("--count", type=int, default=2000, help="Async invocations to push through")
    b.add_argument(
        "--workers", type=int, default=1, help="workers to run (with --async or --cluster)"
    )
    b.add_argument(
        "--cluster",
        action="store_true",
        help="computebus on a local 3-node cluster (`computebus cluster`) instead of `serve`",
    )

    return parser, sub.choices


def _version() -> str:
    try:
        return importlib.metadata.version("computebus")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
