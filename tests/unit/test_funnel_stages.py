"""The funnel rule (stream_apps/funnel.py): a stage counts the offers that reached it or a later
one, each once, whatever order the events come in and however often they are redelivered."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream_apps.funnel import STAGES, funnel_of_events, script_args, stages_to_count

OFFERS = [f"offer-{i}" for i in range(6)]
event_lists = st.lists(st.tuples(st.sampled_from(OFFERS), st.sampled_from(STAGES)), max_size=60)


def furthest(events: list[tuple[str, str]]) -> dict[str, int]:
    """Each offer's furthest stage (index in STAGES), computed directly from the events."""
    out: dict[str, int] = {}
    for offer_id, event in events:
        out[offer_id] = max(out.get(offer_id, -1), STAGES.index(event))
    return out


@given(event_lists, st.randoms(use_true_random=False))
def test_each_stage_counts_the_offers_that_reached_it_or_later(events, rnd):
    # redeliveries: some events again, and everything in another order
    again = events + [e for e in events if rnd.random() < 0.5]
    rnd.shuffle(again)
    got = funnel_of_events(again)
    reached = furthest(events)
    for i, stage in enumerate(STAGES):
        assert got[stage] == sum(1 for top in reached.values() if top >= i)
    assert got["delivered"] >= got["opened"] >= got["redeemed"]
    assert got == funnel_of_events(events)  # order and redeliveries change nothing


@given(event_lists)
def test_every_prefix_is_monotone(events):
    """What the dashboard shows at any moment (after some of the events) never contradicts
    itself."""
    for n in range(len(events) + 1):
        got = funnel_of_events(events[:n])
        assert got["delivered"] >= got["opened"] >= got["redeemed"]


def test_a_later_stage_counts_the_earlier_ones_once():
    assert stages_to_count("redeemed", ()) == ("delivered", "opened", "redeemed")
    assert stages_to_count("opened", {"delivered"}) == ("opened",)
    assert stages_to_count("delivered", {"delivered", "opened"}) == ()
    assert stages_to_count("redeemed", {"delivered", "opened", "redeemed"}) == ()
    assert stages_to_count("clicked", ()) == ()
    # the reported contradiction: opened and redeemed with no delivered event
    assert funnel_of_events([("o", "opened"), ("o", "redeemed")]) == {
        "delivered": 1, "opened": 1, "redeemed": 1}


def test_script_arguments_name_one_mark_per_stage():
    keys, args = script_args("o1", "opened", ["h1", "h2"])
    assert keys[-2:] == ["h1", "h2"]
    assert len(set(keys[:3])) == 3 and all("o1" in k for k in keys[:3])
    assert args[0] == 2 and args[2:] == ["reached_delivered", "reached_opened", "reached_redeemed"]
    assert script_args("o1", "clicked", [])[1][0] == 0
