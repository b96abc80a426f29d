"""The dead-letter store against the real nats-server: one letter per invocation, newest first,
a too-big payload left out, removal that spares a newer letter, and a listing that says when it
could not read everything in its time."""

from __future__ import annotations

import uuid

import msgspec
from nats.aio.client import Client

from bus import subjects
from bus.dead_letters import DeadLetters
from bus.scan import newest_page
from schemas.invocations import DeadLetter


def letter(ft: str, invocation_id: str, payload: bytes = b"{}", attempts: int = 1) -> DeadLetter:
    return DeadLetter(
        invocation_id=invocation_id,
        collection_topic="dl",
        service=ft,
        attempts=attempts,
        error_code="function_error",
        error_message="boom",
        failed_at=1,
        payload=msgspec.Raw(payload),
    )


async def test_letters_are_listed_newest_first_and_replaced_per_invocation(nc: Client) -> None:
    store = await DeadLetters.open(nc.jetstream(), nc.max_payload, max_age_s=60, max_bytes=1 << 20)
    ft = uuid.uuid4().hex[:9]
    await store.add(letter(ft, "a"))
    await store.add(letter(ft, "b"))
    await store.add(letter(ft, "a", attempts=2))  # the same invocation failed again
    page = await store.list("dl", ft)
    assert page.total == 2 and page.complete
    assert [(x.invocation_id, x.attempts) for x in page.items] == [("a", 2), ("b", 1)]


async def test_a_payload_too_big_for_a_message_is_left_out(nc: Client) -> None:
    store = DeadLetters(nc.jetstream(), max_letter_bytes=1000, max_age_s=60, max_bytes=1 << 20)
    ft = uuid.uuid4().hex[:9]
    await store.add(letter(ft, "big", payload=b'"' + b"x" * 2000 + b'"'))
    await store.add(letter(ft, "small", payload=b"[1,2]"))
    found = await store.get("dl", ft, "big")
    assert found is not None
    assert found[0].payload_omitted is True
    assert isinstance(found[0].payload, msgspec.UnsetType)
    small = await store.get("dl", ft, "small")
    assert small is not None and isinstance(small[0].payload, msgspec.Raw)
    assert bytes(small[0].payload) == b"[1,2]"


async def test_remove_spares_a_newer_letter_of_the_same_invocation(nc: Client) -> None:
    store = await DeadLetters.open(nc.jetstream(), nc.max_payload, max_age_s=60, max_bytes=1 << 20)
    ft = uuid.uuid4().hex[:9]
    await store.add(letter(ft, "a"))
    first = await store.get("dl", ft, "a")
    assert first is not None
    await store.add(letter(ft, "a", attempts=3))
    await store.remove("dl", ft, "a", first[1])
    kept = await store.get("dl", ft, "a")
    assert kept is not None and kept[0].attempts == 3
    await store.remove("dl", ft, "a", kept[1])
    assert await store.get("dl", ft, "a") is None


async def test_a_listing_past_its_budget_says_it_is_incomplete(nc: Client) -> None:
    js = nc.jetstream()
    store = await DeadLetters.open(js, nc.max_payload, max_age_s=60, max_bytes=64 << 20)
    ft = uuid.uuid4().hex[:9]
    for i in range(300):  # more than one fetch
        await store.add(letter(ft, f"inv{i}"))
    where = (js, subjects.dead_letter_stream("dl"), subjects.dead_letter_filter("dl", ft), bytes)
    whole = await newest_page(*where, limit=10, offset=0)
    assert whole.total == 300 and whole.complete
    cut = await newest_page(*where, limit=10, offset=0, budget_s=0.0)
    assert not cut.complete
    assert 0 < cut.total < 300  # what it read, never passed off as all there is
