"""A faster parser for nats-py's message headers, put in place of the library's own.

nats-py checks every character of every header name in a generator expression; with the
headers a sync invocation carries that was a tenth of a worker's CPU per call. This one gives
the same result (tested against the library's) with one regular expression per name.
"""

from __future__ import annotations

import re

from nats.aio.client import Client

_WHITESPACE = re.compile(r"\s")  # what str.isspace() says, for each character


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """``Name: Value`` lines as nats-py reads them: a line without a colon, a name that is not
    ASCII or that holds whitespace is skipped; values are UTF-8 with replacement."""
    out: dict[str, str] = {}
    for line in raw.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        try:
            key = name.strip().decode("ascii")
        except UnicodeDecodeError:
            continue
        if _WHITESPACE.search(key) is None:
            out[key] = value.strip().decode("utf-8", "replace")
    return out


LIBRARY_PARSER = Client._parse_header_lines


def install() -> None:
    Client._parse_header_lines = staticmethod(parse_header_lines)  # type: ignore[method-assign]
