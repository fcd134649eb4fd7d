"""Summing up a py-spy profile: waiting is not work."""

from __future__ import annotations

from kami_bench.profile import summarise

BASE = "<module> (kami:8);main (kami_cli/main.py:593);serve (kami_cli/main.py:155)"
LOOP = "_run_once (asyncio/base_events.py:1936)"
HANDLER = "handler (kami_ordering/consumers.py:94)"
RAW = "\n".join(
    [
        f"{BASE};_run_once (asyncio/base_events.py:1898);select (selectors.py:468) 60",
        f"{BASE};{LOOP};{HANDLER};load (kami_events/store.py:291);"
        "find_one (pymongo/collection.py:10) 25",
        f"{BASE};{LOOP};{HANDLER};dumps (json/__init__.py:231) 10",
        "_bootstrap (threading.py:995);_worker (concurrent/futures/thread.py:81);"
        "Condition.wait (threading.py:327) 5",
        "garbage line",
    ]
)


def test_busy_samples_exclude_waiting_and_kami_frames_are_counted_inclusively() -> None:
    summary = summarise(RAW)
    assert summary.samples == 100
    assert summary.busy == 35
    assert summary.top_self == [
        ("find_one (pymongo/collection.py:10)", 25),
        ("dumps (json/__init__.py:231)", 10),
    ]
    kami = dict(summary.top_kami)
    assert kami["handler (kami_ordering/consumers.py:94)"] == 35
    assert kami["load (kami_events/store.py:291)"] == 25
    # The CLI's frames are under every stack: they say nothing.
    assert not any("kami_cli" in frame for frame in kami)
