"""Our header parser reads every header block exactly as nats-py's own does."""

from __future__ import annotations

import itertools

from bus.nats_headers import LIBRARY_PARSER, parse_header_lines

BLOCKS = [
    b"",
    b"\r\n",
    b"Compute-Invocation-Id: 0123456789abcdef0123456789abcdef\r\nCompute-Revision: 3\r\n\r\n",
    b'Compute-Caller: {"via":"token","name":"ci \xc3\xa9"}\r\nCompute-Caller-Seal: ab12\r\n\r\n',
    b"NoColon\r\nName:Value\r\nName:\tTabbed \r\n  Spaced :  x  \r\n",
    b"Na me: inner space\r\nN\xc3\xa9: not ascii\r\nBad: \xff\xfe\r\n:empty name\r\n",
    b"Repeated: one\r\nRepeated: two\r\nColons: a:b:c\r\n",
]


def test_it_parses_what_the_library_parses() -> None:
    for block in BLOCKS:
        assert parse_header_lines(block) == LIBRARY_PARSER(block), block


def test_every_ascii_character_in_a_name_is_judged_alike() -> None:
    for a, b in itertools.product(range(128), (ord("x"), 0x0B, 0x1C, 0x85)):
        block = b"A" + bytes([a]) + b"B" + bytes([b]) + b": v\r\n"
        assert parse_header_lines(block) == LIBRARY_PARSER(block), block
