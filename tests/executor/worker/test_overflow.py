"""The invoke intake against a real nats-server: a full worker gives up its place in the queue
group (what was delivered is still taken), so new invocations reach only workers with room, and
takes it again when it has room."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from nats.aio.client import Client
from nats.aio.msg import Msg

from bus.connect import connect
from bus.embedded import EmbeddedNats, start_embedded_nats
from executor.worker.overflow import MAX_HOPS, Intake, Route, route_of

FN = "ms.compute.overflow.function.123456789"


async def test_a_full_intake_leaves_the_invocations_to_the_others(tmp_path: Path) -> None:
    # A server of its own: the session's has the stack's worker in the queue group.
    server = await start_embedded_nats(tmp_path / "nats")
    try:
        nc = await connect(server.url, name="caller")
        try:
            await _full_then_room(server, nc)
        finally:
            await nc.close()
    finally:
        await server.stop()


async def _full_then_room(nats_server: EmbeddedNats, nc: Client) -> None:
    seen: Counter[str] = Counter()

    def taker(name: str) -> object:
        async def take(msg: Msg) -> None:
            seen[name] += 1
            await msg.respond(name.encode())

        return take

    a_nc = await connect(nats_server.url, name="intake-a")
    b_nc = await connect(nats_server.url, name="intake-b")
    a, b = Intake(a_nc, taker("a")), Intake(b_nc, taker("b"))  # type: ignore[arg-type]
    try:
        await a.open()
        await b.open()
        a.full()
        for _ in range(50):
            if not a.taking:
                break
            await asyncio.sleep(0.02)
        await a_nc.flush()
        answers = [(await nc.request(FN, b"", timeout=5)).data for _ in range(20)]
        assert answers == [b"b"] * 20
        a.room()
        for _ in range(50):
            if a.taking:
                break
            await asyncio.sleep(0.02)
        await a_nc.flush()
        answers = [(await nc.request(FN, b"", timeout=5)).data for _ in range(60)]
        assert set(answers) == {b"a", b"b"}  # both take work again
    finally:
        await a.close()
        await b.close()
        await a_nc.close()
        await b_nc.close()


def test_a_route_ends_after_enough_refusals_or_hops_and_a_bad_one_ends_at_once() -> None:
    def msg(headers: dict[str, str]) -> Msg:
        return Msg(_client=None, subject=FN, headers=headers)  # type: ignore[arg-type]

    fresh = route_of(msg({}))
    assert fresh == Route(0, ())
    route: Route | None = fresh
    for _ in range(MAX_HOPS):  # the same worker over and over: only the hops add up
        assert route is not None
        route = route.onward("w1")
    assert route == Route(MAX_HOPS, ("w1",))
    assert route.onward("w1") is None
    assert Route(0, ("w1", "w2", "w3")).onward("w4") is None  # MAX_REFUSALS workers said no
    assert Route(0, ("w1", "w2", "w3")).onward("w2") == Route(1, ("w1", "w2", "w3"))
    parsed = route_of(msg({"Compute-Hops": "2", "Compute-Refused-By": "a,b"}))
    assert parsed == Route(2, ("a", "b"))
    for bad in ({"Compute-Hops": "-1"}, {"Compute-Hops": "x"}, {"Compute-Refused-By": "a" * 5000}):
        assert route_of(msg(bad)).onward("w") is None
