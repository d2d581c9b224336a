"""Sessions, the rate limiter, and the concurrency tools the services share."""

from __future__ import annotations

import asyncio

import pytest

from tiktok_minis.realtime._ratelimit import TokenBucket
from tiktok_minis.services.sessions import InvalidSession, SessionSigner
from tiktok_minis.store.crypto import TokenCipher
from tiktok_minis.support.concurrency import KeyedLock, SingleFlight, TaskSet


def test_session_round_trip_and_rejections() -> None:
    """A session verifies to its claims; tampered, foreign and odd values are InvalidSession."""
    signer = SessionSigner(["a" * 32], ttl_seconds=60)
    session = signer.issue("pub123", 4)
    claims = signer.verify(session)
    assert (claims.public_id, claims.epoch) == ("pub123", 4)
    assert "pub123" not in session, "the session is opaque"
    other = SessionSigner(["b" * 32], ttl_seconds=60)
    for bad in [other.issue("pub123", 4), session[:-2] + "xx", "", 17, None, "x" * 5000]:
        with pytest.raises(InvalidSession):
            signer.verify(bad)


def test_session_signed_with_previous_key_still_verifies() -> None:
    """During a key rotation, sessions issued under the previous key stay valid."""
    old = SessionSigner(["old" * 11], ttl_seconds=60)
    rotated = SessionSigner(["new" * 11, "old" * 11], ttl_seconds=60)
    assert rotated.verify(old.issue("p", 0)).public_id == "p"


def test_token_cipher_uses_separate_keys_per_purpose() -> None:
    """A token ciphertext is not a valid session and vice versa (keys differ by purpose)."""
    tokens = TokenCipher(["k" * 32])
    ciphertext = tokens.encrypt("act.secret")
    assert "act.secret" not in ciphertext
    assert tokens.decrypt(ciphertext) == "act.secret"
    with pytest.raises(InvalidSession):
        SessionSigner(["k" * 32], ttl_seconds=60).verify(ciphertext)


def test_token_bucket_allows_burst_then_refills() -> None:
    """Burst events pass at once, the next is refused, and time refills the bucket."""
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] += 0.5
    assert bucket.take() is True
    assert bucket.take() is False


async def test_single_flight_shares_one_call_and_survives_a_cancelled_waiter() -> None:
    """Concurrent runs of one key share one call; cancelling one waiter does not cancel it."""
    calls = 0
    release = asyncio.Event()

    async def work() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    flight: SingleFlight[str, int] = SingleFlight()
    waiters = [asyncio.ensure_future(flight.run("k", work)) for _ in range(5)]
    await asyncio.sleep(0)
    waiters[0].cancel()
    release.set()
    results = await asyncio.gather(*waiters[1:])
    assert results == [42] * 4 and calls == 1 and len(flight) == 0


async def test_keyed_lock_serialises_one_key_and_forgets_idle_keys() -> None:
    """One holder per key at a time; keys are dropped once idle."""
    locks: KeyedLock[str] = KeyedLock()
    inside = 0
    peak = 0

    async def hold() -> None:
        nonlocal inside, peak
        async with locks.hold("p"):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(hold() for _ in range(10)))
    assert peak == 1 and len(locks) == 0


async def test_task_set_closes_idempotently_and_refuses_after_close() -> None:
    """Close cancels running tasks; spawning after close runs nothing."""
    tasks = TaskSet("test")
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    tasks.spawn(forever())
    await started.wait()
    await tasks.close()
    await tasks.close()
    assert len(tasks) == 0

    async def never() -> None:
        raise AssertionError("must not run")

    assert tasks.spawn(never()) is None
