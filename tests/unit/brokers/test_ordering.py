"""ChannelOrder: the hold / fill / skip decision of one channel, with no Redis and no loop."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hypothesis import given
from hypothesis import strategies as st

from wagerwire.brokers.ordering import (
    Action,
    ChannelOrder,
    Deliver,
    Duplicate,
    FetchRange,
    Skip,
    StartFill,
)

Order = ChannelOrder[str]


def run(actions: Iterable[Action[str]]) -> list[Action[str]]:
    return list(actions)


def fill(order: Order, history: Mapping[int, str], epoch: str = "e") -> list[Action[str]]:
    """Drive a fill the way the broker does, serving pages from ``history``."""
    out: list[Action[str]] = []
    while (asked := order.fetch_range()) is not None:
        page: list[tuple[int, str]] = []
        offset = asked.after + 1
        while offset in history and len(page) < asked.limit and asked.epoch == epoch:
            page.append((offset, history[offset]))
            offset += 1
        out += order.fetched(asked, page)
    out += order.fill_ended()
    return out


def delivered(actions: Iterable[Action[str]]) -> list[int]:
    return [a.offset for a in actions if isinstance(a, Deliver)]


def seeded(offset: int = 0, epoch: str = "e") -> Order:
    order: Order = ChannelOrder()
    order.seed(epoch, offset)
    return order


def test_in_order_messages_are_delivered_at_once() -> None:
    order = seeded()
    assert run(order.offer("e", 1, "m1")) == [Deliver(1, "m1")]
    assert run(order.offer("e", 2, "m2")) == [Deliver(2, "m2")]
    assert order.position == ("e", 2)
    assert order.fetch_range() is None and not order.filling


def test_an_unknown_channel_starts_at_its_first_message() -> None:
    order: Order = ChannelOrder()
    assert order.position is None
    assert run(order.offer("e", 41, "m41")) == [Deliver(41, "m41")]
    assert order.position == ("e", 41)


def test_duplicates_are_reported_not_delivered() -> None:
    order = seeded(5)
    assert run(order.offer("e", 5, "old")) == [Duplicate("old")]
    assert run(order.offer("e", 6, "m6")) == [Deliver(6, "m6")]
    assert run(order.offer("e", 6, "again")) == [Duplicate("again")]
    assert order.position == ("e", 6)


def test_a_message_ahead_is_held_and_the_hole_filled_from_history() -> None:
    order = seeded(1)
    assert run(order.offer("e", 4, "m4")) == [StartFill()]
    assert order.pending == {4: "m4"} and order.filling
    assert order.fetch_range() == FetchRange("e", 1, 2)
    # While the fill runs, even the next expected offset is held.
    assert run(order.offer("e", 2, "live2")) == []
    actions = fill(order, {2: "h2", 3: "h3", 4: "h4"})
    # The held copies win over the fetched ones; 4 is delivered from the fill itself.
    assert actions == [Deliver(2, "live2"), Deliver(3, "h3"), Deliver(4, "m4")]
    assert order.pending == {} and not order.filling and order.position == ("e", 4)


def test_fill_pages_are_bounded_by_the_page_size() -> None:
    order: Order = ChannelOrder(page_size=3)
    order.seed("e", 0)
    assert run(order.offer("e", 8, "m8")) == [StartFill()]
    asks: list[FetchRange] = []
    while (asked := order.fetch_range()) is not None:
        asks.append(asked)
        run(order.fetched(asked, [(o, f"h{o}") for o in range(asked.after + 1,
                                                             asked.after + 1 + asked.limit)]))
    assert [(a.after, a.limit) for a in asks] == [(0, 3), (3, 3), (6, 1)]
    assert delivered(order.fill_ended()) == [8]


def test_a_hole_history_no_longer_has_is_skipped() -> None:
    order = seeded(1)
    run(order.offer("e", 5, "m5"))
    assert fill(order, {}) == [Skip(2, 4), Deliver(5, "m5")]
    assert order.position == ("e", 5)


def test_a_partial_fill_then_skip() -> None:
    order = seeded(1)
    run(order.offer("e", 6, "m6"))
    assert fill(order, {2: "h2", 3: "h3"}) == [
        Deliver(2, "h2"), Deliver(3, "h3"), Skip(4, 5), Deliver(6, "m6"),
    ]


def test_reordered_arrivals_are_delivered_in_offset_order() -> None:
    order = seeded()
    actions = run(order.offer("e", 3, "m3"))
    assert actions == [StartFill()]
    run(order.offer("e", 2, "m2"))
    run(order.offer("e", 1, "m1"))  # held too: a fill is running
    assert fill(order, {1: "h1", 2: "h2", 3: "h3"}) == [
        Deliver(1, "m1"), Deliver(2, "m2"), Deliver(3, "m3"),
    ]


def test_held_messages_behind_a_second_hole_start_another_fill() -> None:
    order = seeded()
    run(order.offer("e", 2, "m2"))
    run(order.offer("e", 5, "m5"))
    # The fill only had to reach 1 at first; it extends to 4 when 5 arrives.
    assert order.fill_to == 4
    assert fill(order, {1: "h1", 2: "h2", 3: "h3", 4: "h4"}) == [
        Deliver(1, "h1"), Deliver(2, "m2"), Deliver(3, "h3"), Deliver(4, "h4"), Deliver(5, "m5"),
    ]


def test_stale_held_copies_are_duplicates_when_the_fill_ends() -> None:
    order = seeded()
    run(order.offer("e", 3, "m3"))
    asked = order.fetch_range()
    assert asked == FetchRange("e", 0, 2)
    run(order.fetched(asked, [(1, "h1"), (2, "h2")]))
    assert order.fetch_range() is None
    # A copy of 2 arrives after the fill delivered it, while the fill is still winding up.
    run(order.offer("e", 2, "late2"))
    assert run(order.fill_ended()) == [Deliver(3, "m3")]
    assert order.pending == {}


def test_a_new_epoch_restarts_the_channel_from_one() -> None:
    order = seeded(7, "old")
    assert run(order.offer("new", 1, "n1")) == [Deliver(1, "n1")]
    assert order.position == ("new", 1)
    assert run(order.offer("new", 2, "n2")) == [Deliver(2, "n2")]


def test_a_new_epoch_drops_what_was_held_of_the_old_one() -> None:
    order = seeded(7, "old")
    run(order.offer("old", 9, "o9"))
    assert order.pending == {9: "o9"}
    assert run(order.offer("new", 1, "n1")) == []  # held: the fill is still running
    assert order.pending == {1: "n1"} and order.epoch == "new"
    assert delivered(fill(order, {1: "h1"}, epoch="new")) == [1]


def test_a_new_epoch_starting_past_one_fills_from_one() -> None:
    order = seeded(7, "old")
    assert run(order.offer("new", 3, "n3")) == [StartFill()]
    assert order.fetch_range() == FetchRange("new", 0, 2)
    assert fill(order, {1: "n1", 2: "n2"}, epoch="new") == [
        Deliver(1, "n1"), Deliver(2, "n2"), Deliver(3, "n3"),
    ]


def test_a_page_of_an_epoch_that_ended_meanwhile_is_ignored() -> None:
    order = seeded(1, "old")
    run(order.offer("old", 4, "o4"))
    asked = order.fetch_range()
    assert asked is not None and asked.epoch == "old"
    run(order.offer("new", 1, "n1"))  # held: the fill is running
    assert run(order.fetched(asked, [(2, "o2"), (3, "o3")])) == []
    again = order.fetch_range()
    assert again is not None and (again.epoch, again.after) == ("new", 0)


def test_sync_seeds_an_unknown_channel_and_fills_a_known_one() -> None:
    order: Order = ChannelOrder()
    assert run(order.sync("e", 10)) == []
    assert order.position == ("e", 10)
    assert run(order.sync("e", 10)) == []
    assert run(order.sync("e", 12)) == [StartFill()]
    assert fill(order, {11: "h11", 12: "h12"}) == [Deliver(11, "h11"), Deliver(12, "h12")]


def test_sync_to_another_epoch_fills_it_from_one() -> None:
    order = seeded(3, "old")
    assert run(order.sync("new", 2)) == [StartFill()]
    assert order.delivered == 0
    assert delivered(fill(order, {1: "n1", 2: "n2"}, epoch="new")) == [1, 2]
    held = seeded(3, "old")
    run(held.offer("old", 6, "o6"))  # held, a fill runs
    assert run(held.sync("new", 2)) == []  # the running fill goes on, in the new epoch
    assert held.pending == {} and held.delivered == 0
    assert delivered(fill(held, {1: "n1", 2: "n2"}, epoch="new")) == [1, 2]


@given(
    st.integers(min_value=1, max_value=30).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.lists(st.integers(min_value=1, max_value=n), min_size=1, max_size=3 * n),
            st.sets(st.integers(min_value=1, max_value=n)),
        )
    )
)
def test_any_arrival_order_delivers_each_offset_once_in_order(
    case: tuple[int, list[int], set[int]],
) -> None:
    n, arrivals, lost = case
    history = {o: f"h{o}" for o in range(1, n + 1) if o not in lost}
    order = seeded()
    out: list[Action[str]] = []
    for offset in arrivals:
        actions = run(order.offer("e", offset, f"m{offset}"))
        out += actions
        if StartFill() in actions:
            out += fill(order, history)
    if order.filling:
        out += fill(order, history)
    offsets = delivered(out)
    assert offsets == sorted(set(offsets))
    skipped = {o for a in out if isinstance(a, Skip) for o in range(a.first, a.last + 1)}
    assert not skipped & set(offsets)
    top = max(arrivals)
    assert set(offsets) | skipped == set(range(1, top + 1))
    assert all(a.first in lost for a in out if isinstance(a, Skip))  # a skip starts at a loss


def test_a_channel_seen_first_at_a_later_offset_starts_there() -> None:
    order: Order = ChannelOrder()
    assert run(order.offer("e", 5, "m5")) == [Deliver(5, "m5")]


def test_a_new_channel_is_delivered_from_offset_1() -> None:
    """A channel nobody had written when it was subscribed: its first message seen at offset
    2 (offset 1 was persisted but its fan-out was lost with Redis) is held while 1 is filled."""
    order: Order = ChannelOrder()
    order.expect_new()
    assert run(order.offer("e", 2, "m2")) == [StartFill()]
    assert order.fetch_range() == FetchRange("e", 0, 1)
    assert fill(order, {1: "m1", 2: "m2"}) == [Deliver(1, "m1"), Deliver(2, "m2")]
    assert order.position == ("e", 2)


def test_a_new_channel_synced_to_a_top_fills_from_1() -> None:
    order: Order = ChannelOrder()
    order.expect_new()
    assert run(order.sync("e", 2)) == [StartFill()]
    assert fill(order, {1: "m1", 2: "m2"}) == [Deliver(1, "m1"), Deliver(2, "m2")]


def test_expect_new_is_ignored_once_the_epoch_is_known() -> None:
    order: Order = ChannelOrder()
    order.seed("e", 7)
    order.expect_new()
    assert run(order.offer("e", 8, "m8")) == [Deliver(8, "m8")]
