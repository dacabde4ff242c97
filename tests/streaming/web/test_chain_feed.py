"""Per-client sequencing of chain messages (pure)."""

from __future__ import annotations

from streaming.web.chain_feed import ChainFeed, Decision


def msg(seq: int, ts: float) -> dict:
    return {"seq": seq, "ts": ts}


def test_a_new_client_needs_a_snapshot_before_any_delta():
    assert ChainFeed().on_delta(msg(7, 1.0)) is Decision.RESYNC


def test_consecutive_deltas_are_sent_and_older_ones_skipped():
    feed = ChainFeed()
    feed.sent(msg(10, 5.0), kind="snapshot")
    assert feed.on_delta(msg(9, 4.9)) is Decision.SKIP
    assert feed.on_delta(msg(10, 5.0)) is Decision.SKIP
    assert feed.on_delta(msg(11, 5.1)) is Decision.SEND
    feed.sent(msg(11, 5.1), kind="delta")
    assert (feed.snapshots_sent, feed.deltas_sent) == (1, 1)


def test_a_gap_asks_for_a_fresh_snapshot():
    feed = ChainFeed()
    feed.sent(msg(10, 5.0), kind="snapshot")
    assert feed.on_delta(msg(13, 5.3)) is Decision.RESYNC


def test_a_restarted_ticker_numbering_from_one_is_followed():
    feed = ChainFeed()
    feed.sent(msg(500, 100.0), kind="delta")
    assert feed.on_delta(msg(2, 160.0)) is Decision.RESYNC
    assert feed.on_snapshot(msg(2, 160.0))


def test_snapshots_are_sent_only_when_newer_unless_asked_for():
    feed = ChainFeed()
    assert feed.on_snapshot(msg(3, 1.0))
    feed.sent(msg(3, 1.0), kind="snapshot")
    assert not feed.on_snapshot(msg(3, 1.0))
    assert not feed.on_snapshot(msg(2, 0.9))
    assert feed.on_snapshot(msg(4, 1.1))
    assert feed.on_snapshot(msg(3, 1.0), forced=True)


def test_a_folded_delta_is_sent_when_it_covers_the_clients_next_message():
    feed = ChainFeed()
    feed.sent(msg(10, 5.0), kind="snapshot")
    # The web process folded messages 8..14: applying it on top of 10 gives the state at 14.
    assert feed.on_delta({"seq": 14, "from_seq": 8, "ts": 5.4}) is Decision.SEND
    assert feed.on_delta({"seq": 14, "from_seq": 11, "ts": 5.4}) is Decision.SEND
    # Entirely older than what the client has: nothing to do.
    assert feed.on_delta({"seq": 10, "from_seq": 6, "ts": 5.0}) is Decision.SKIP
    # Starts past the client's next message: message 11 is missing, resynchronise.
    assert feed.on_delta({"seq": 15, "from_seq": 12, "ts": 5.5}) is Decision.RESYNC
