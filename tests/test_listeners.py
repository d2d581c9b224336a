"""The one change feed every service uses: one-shot unsubscribes, failing listeners contained."""

from __future__ import annotations

import logging

import pytest

from tiktok_minis.support.listeners import Listeners

log = logging.getLogger("tests.listeners")


def test_a_second_unsubscribe_leaves_the_other_subscription_of_the_same_listener() -> None:
    """The same listener subscribed twice: unsubscribing one twice still leaves the other."""
    feed: Listeners[int] = Listeners(log, "number")
    heard: list[int] = []
    first = feed.subscribe(heard.append)
    feed.subscribe(heard.append)
    first()
    first()
    feed.emit(7)
    assert heard == [7]


def test_a_failing_listener_is_logged_and_the_others_still_hear(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A listener that raises does not stop the change reaching the next one."""
    feed: Listeners[str] = Listeners(log, "word")
    heard: list[str] = []

    def broken(_: str) -> None:
        raise RuntimeError("boom")

    feed.subscribe(broken)
    feed.subscribe(heard.append)
    with caplog.at_level(logging.ERROR, logger="tests.listeners"):
        feed.emit("hello", {"board": "global"})
    assert heard == ["hello"]
    [record] = caplog.records
    assert record.getMessage() == "word listener failed"
    assert getattr(record, "board", None) == "global"


def test_unsubscribing_while_being_called_does_not_skip_the_next_listener() -> None:
    """A listener that unsubscribes itself mid-emit: the one after it is still called."""
    feed: Listeners[int] = Listeners(log, "number")
    heard: list[str] = []
    stop = None

    def once(_: int) -> None:
        heard.append("once")
        assert stop is not None
        stop()

    stop = feed.subscribe(once)
    feed.subscribe(lambda _: heard.append("always"))
    feed.emit(1)
    feed.emit(2)
    assert heard == ["once", "always", "always"]
