"""Unit rules of rate control and fleet health (no sockets): AIMD, latency backoff, taking servers out."""

from __future__ import annotations

import asyncio

from opencharacter.backends.http_errors import KeyMask
from opencharacter.backends.http_fleet import FAILURES_BEFORE_OUT, Fleet
from opencharacter.backends.http_limits import AimdLimit
from opencharacter.backends.http_payload import next_structured_mode


def test_simultaneous_429s_cut_once_per_round_trip():
    limit = AimdLimit(128)
    epoch = limit.epoch
    for _ in range(100):  # a burst of rejections for requests all sent before the first cut
        limit.on_overload(epoch)
    assert limit.cuts == 1 and limit.slots == int(128 * AimdLimit.overload_factor)
    limit.on_overload(limit.epoch)  # a rejection of a request sent after the cut is news
    assert limit.cuts == 2


def test_success_grows_back_by_about_one_per_round_trip_and_never_above_the_ceiling():
    limit = AimdLimit(16)
    limit.on_overload(limit.epoch)
    low = limit.slots
    for _ in range(low):
        limit.on_success(0.1)
    assert limit.slots == low + 1
    for _ in range(10_000):
        limit.on_success(0.1)
    assert limit.slots == 16


def test_rising_latency_cuts_gently_and_a_steady_one_does_not():
    steady = AimdLimit(32)
    for _ in range(500):
        steady.on_success(0.1)
    assert steady.cuts == 0 and steady.slots == 32
    rising = AimdLimit(32)
    for _ in range(64):
        rising.on_success(0.1)
    for _ in range(64):
        rising.on_success(1.0)  # ten times the recent baseline
    assert rising.cuts >= 1 and rising.slots < 32
    off = AimdLimit(32, adaptive=False)
    off.on_overload(off.epoch)
    assert off.slots == 32


def test_a_failing_fleet_member_is_taken_out_and_probed_later():
    async def main():
        fleet = Fleet(["http://a/v1", "http://b/v1"], concurrency=4, adaptive=True)
        a, b = fleet.endpoints
        for _ in range(FAILURES_BEFORE_OUT):
            fleet.failed(a)
        assert a.down_until > 0
        picked = {(await fleet.acquire()).base_url for _ in range(4)}
        assert picked == {"http://b/v1"}
        # the last one up is never taken out: with nowhere else to go, the engine's backoff applies
        for _ in range(FAILURES_BEFORE_OUT):
            fleet.failed(b)
        assert b.down_until == 0
        a.down_until = 0.001  # its cool-down is over
        for endpoint in list(fleet.endpoints):
            while endpoint.in_flight:
                fleet.release(endpoint)
        first = await fleet.acquire()
        assert first is a and a.probing and a.slots() == 1
        fleet.succeeded(a, 0.1)
        assert not a.probing and a.slots() == 4

    asyncio.run(main())


def test_key_mask_catches_the_key_and_shortened_echoes():
    mask = KeyMask("sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX")
    assert mask("key sk-proj-ABCDEFGHIJKLMNOPQRSTUVWX rejected") == "key *** rejected"
    assert "ABCD" not in mask("Incorrect API key provided: sk-proj-ABCD****UVWX.")
    assert "QRSTUVWX" not in mask("ends in ...QRSTUVWX")
    assert KeyMask(None)("nothing to hide") == "nothing to hide"


def test_structured_rejections_are_recognised_by_status_and_message():
    llama = "Input should be 'text' or 'json_object'"
    assert next_structured_mode("json_schema", 500, llama) == "json_object"
    assert next_structured_mode("json_object", 400, "response_format is not supported") == "prompt"
    assert next_structured_mode("json_schema", 500, "CUDA out of memory") is None
    assert next_structured_mode("json_schema", 429, llama) is None
    assert next_structured_mode("prompt", 500, llama) is None
