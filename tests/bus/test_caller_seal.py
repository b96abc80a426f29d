"""The caller seal without a bus: a sealed caller opens as itself; a tampered caller, a seal for
another invocation or another key, or no seal at all reads as a NATS client."""

from __future__ import annotations

from bus.caller_seal import CallerSeal
from schemas.headers import H_CALLER, H_CALLER_SEAL
from schemas.invocations import CallerInfo

ADA = CallerInfo(via="token", token_id="0123456789abcdef", name="ada")
NATS = CallerInfo(via="nats")


def test_a_sealed_caller_opens_as_itself() -> None:
    seal = CallerSeal(b"k" * 32)
    assert seal.caller(seal.headers("inv-1", ADA), "inv-1") == ADA


def test_anything_not_sealed_by_the_key_for_this_invocation_is_a_nats_caller() -> None:
    seal = CallerSeal(b"k" * 32)
    sealed = seal.headers("inv-1", ADA)
    tampered = {**sealed, H_CALLER: sealed[H_CALLER].replace("ada", "root")}
    assert seal.caller(tampered, "inv-1") == NATS
    assert seal.caller(sealed, "inv-2") == NATS  # a seal cannot be replayed on another call
    assert CallerSeal(b"x" * 32).caller(sealed, "inv-1") == NATS
    assert seal.caller({H_CALLER: sealed[H_CALLER]}, "inv-1") == NATS
    assert seal.caller({H_CALLER: "{", H_CALLER_SEAL: "00"}, "inv-1") == NATS
    assert seal.caller(None, "inv-1") == NATS
