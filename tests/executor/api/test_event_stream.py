"""Server-sent event streams driven through ASGI directly: what they write and in what order,
pings when idle, and their end (the client going away, the source ending, the API closing
them all), which always leaves the source; the per-process cap refuses before anything is sent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from starlette.types import Message

from executor.api.event_stream import EventStream, EventStreams, Push, event_frame
from schemas.errors import RateLimited, Unavailable


class Client:
    """One request's ASGI side: what the stream sent, and a disconnect to send it."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.wrote = asyncio.Event()
        self._incoming: asyncio.Queue[Message] = asyncio.Queue()
        self._incoming.put_nowait({"type": "http.request", "body": b"", "more_body": False})

    async def receive(self) -> Message:
        return await self._incoming.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        self.wrote.set()

    def leave(self) -> None:
        self._incoming.put_nowait({"type": "http.disconnect"})

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    @property
    def finished(self) -> bool:
        return bool(self.sent) and self.sent[-1] == {
            "type": "http.response.body",
            "body": b"",
            "more_body": False,
        }

    async def wait_for(self, text: bytes) -> None:
        async with asyncio.timeout(5):
            while text not in self.body:
                self.wrote.clear()
                await self.wrote.wait()


class Source:
    """A source that records whether the stream is following it."""

    def __init__(self) -> None:
        self.push: Push | None = None
        self.following = False

    @contextlib.asynccontextmanager
    async def __call__(self, push: Push) -> AsyncIterator[None]:
        self.push, self.following = push, True
        try:
            yield
        finally:
            self.following = False


def serve(stream: EventStream, client: Client) -> asyncio.Task[None]:
    return asyncio.create_task(stream({"type": "http"}, client.receive, client.send))


def test_an_event_is_its_lines_and_a_blank_one() -> None:
    assert event_frame("record", "abc", b'{"a":1}') == b'event: record\nid: abc\ndata: {"a":1}\n\n'
    assert event_frame("x", "1", b"one\ntwo") == b"event: x\nid: 1\ndata: one\ndata: two\n\n"


async def test_a_stream_says_ready_then_sends_what_comes_and_pings_when_idle() -> None:
    streams, source, client = EventStreams(4, ping_s=0.05), Source(), Client()
    task = serve(streams.response(source), client)
    await client.wait_for(b": ready\n\n")
    start = client.sent[0]
    assert start["type"] == "http.response.start" and start["status"] == 200
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache" and headers["x-accel-buffering"] == "no"
    assert client.body == b"retry: 3000\n\n: ready\n\n"
    assert source.following and streams.count == 1
    assert source.push is not None
    source.push(b"event: record\nid: 1\ndata: {}\n\n")
    await client.wait_for(b"data: {}\n\n")
    await client.wait_for(b": ping\n\n")
    source.push(None)  # the source is over (the function was deleted)
    await asyncio.wait_for(task, 5)
    assert client.finished and not source.following and streams.count == 0


async def test_the_client_going_away_ends_the_stream_and_leaves_the_source() -> None:
    streams, source, client = EventStreams(4), Source(), Client()
    task = serve(streams.response(source), client)
    await client.wait_for(b": ready\n\n")
    client.leave()
    await asyncio.wait_for(task, 5)  # at once: not at the next ping, 15 s away
    assert not source.following and streams.count == 0


async def test_closing_ends_every_stream_and_refuses_new_ones() -> None:
    streams = EventStreams(4)
    sources, clients = [Source(), Source()], [Client(), Client()]
    tasks = [serve(streams.response(s), c) for s, c in zip(sources, clients, strict=True)]
    for client in clients:
        await client.wait_for(b": ready\n\n")
    streams.close()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert all(c.finished for c in clients) and not any(s.following for s in sources)
    late = Client()
    with pytest.raises(Unavailable):
        await serve(streams.response(Source()), late)
    assert late.sent == []


async def test_past_the_limit_a_stream_is_refused_before_it_follows_or_sends() -> None:
    streams, first = EventStreams(1), Client()
    task = serve(streams.response(Source()), first)
    await first.wait_for(b": ready\n\n")
    second, source = Client(), Source()
    with pytest.raises(RateLimited, match="1 live streams") as refused:
        await serve(streams.response(source), second)
    assert "COMPUTEBUS_LIVE_STREAMS_MAX" in refused.value.message
    assert refused.value.http_headers()["Retry-After"]
    assert second.sent == [] and source.push is None
    first.leave()
    await asyncio.wait_for(task, 5)
    third = Client()
    again = serve(streams.response(Source()), third)  # the slot was given back
    await third.wait_for(b": ready\n\n")
    third.leave()
    await asyncio.wait_for(again, 5)


class SlowClient(Client):
    """A client that stops reading after ``: ready`` until ``resume`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.resume = asyncio.Event()

    async def send(self, message: Message) -> None:
        await super().send(message)
        if b": ready" in self.body:
            await self.resume.wait()


async def test_a_slow_client_holds_megabytes_of_frames_at_most_not_a_thousand_records() -> None:
    streams, source, client = EventStreams(4), Source(), SlowClient()
    task = serve(streams.response(source), client)
    await client.wait_for(b": ready\n\n")
    assert source.push is not None
    big = b"x" * (1 << 20)  # a record with its payloads kept: NATS lets one be megabytes
    for n in range(40):
        source.push(event_frame("record", str(n), big))
    source.push(None)
    client.resume.set()
    await asyncio.wait_for(task, 5)
    delivered = client.body.count(b"event: record")
    assert 1 <= delivered <= 9  # 8 MiB of frames waited; the rest were dropped, newest first
    assert b"id: 0\n" in client.body and b"id: 39\n" not in client.body


async def test_one_frame_bigger_than_the_byte_bound_still_goes_to_a_client_keeping_up() -> None:
    streams, source, client = EventStreams(4), Source(), Client()
    task = serve(streams.response(source), client)
    await client.wait_for(b": ready\n\n")
    assert source.push is not None
    source.push(event_frame("record", "huge", b"y" * (9 << 20)))
    source.push(None)
    await asyncio.wait_for(task, 5)
    assert b"id: huge\n" in client.body


async def test_a_caller_no_longer_allowed_gets_nothing_more_and_the_stream_ends() -> None:
    streams, source, client = EventStreams(4, ping_s=0.05), Source(), Client()
    allowed = True
    task = serve(streams.response(source, lambda: allowed), client)
    await client.wait_for(b": ready\n\n")
    assert source.push is not None
    source.push(event_frame("record", "before", b"{}"))
    await client.wait_for(b"id: before\n")
    allowed = False  # the token was revoked
    source.push(event_frame("record", "after", b"{}"))
    await asyncio.wait_for(task, 5)
    assert client.finished and b"id: after" not in client.body
    assert not source.following and streams.count == 0
