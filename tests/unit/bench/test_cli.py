"""bench/purchases.py refuses bad input with a message and a non-zero exit."""

from __future__ import annotations

import purchases
import pytest

ENV = ["--kafka", "127.0.0.1:19092", "--mongodb", "mongodb://127.0.0.1:27018/"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--rate", "0"], "--rate must be above 0"),
        (["--duration", "-5"], "--duration must be above 0"),
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["--phases", "rate,nap"], "--phases takes a comma list"),
        (["--phases", "rate,rate"], "names a phase twice"),
        (["--hold-delivery", "30"], "--hold-delivery above 9 s"),
        (["--rate", "lots"], "invalid float value"),
        (["--output", "/no/such/dir/perf.md"], "no directory /no/such/dir"),
        (["--reuse", "--cheap-hashing"], "not with --reuse"),
        (["--replicas", "ordering"], "--replicas takes SERVICE=N"),
        (["--replicas", "ordering=two"], "--replicas takes SERVICE=N"),
        (["--replicas", "shipping=2"], "no service 'shipping'"),
        (["--replicas", "ordering=1"], "N must be from 2 to 8"),
        (["--replicas", "ordering=2", "--replicas", "ordering=3"], "names ordering twice"),
        (["--replicas", "ordering=4", "--partitions", "3"], "fewer than the 4 processes"),
        (["--replicas", "ordering=2", "--reuse"], "not with --reuse"),
        (["--partitions", "0"], "--partitions must be between 1 and 64"),
    ],
)
def test_bad_input_exits_with_2_and_says_why(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        purchases.parse([*ENV, *arguments])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_servers_are_required(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KAMI_KAFKA_BOOTSTRAP", raising=False)
    with pytest.raises(SystemExit):
        purchases.parse(["--mongodb", "mongodb://127.0.0.1:27018/"])
    assert "KAMI_KAFKA_BOOTSTRAP" in capsys.readouterr().err


def test_quick_shrinks_what_was_not_set_explicitly() -> None:
    plan = purchases.parse([*ENV, "--quick", "--rate", "20"])
    assert isinstance(plan, purchases.Plan)
    assert plan.rate == 20  # explicit wins
    assert plan.duration == 12 and plan.burst == 45 and plan.purchase_timeout == 20
    assert plan.phases == ("rate", "saturation", "burst")
    # A flag given explicitly wins even when it repeats the full run's default.
    explicit = purchases.parse([*ENV, "--quick", "--purchase-timeout", "60"])
    assert isinstance(explicit, purchases.Plan)
    assert explicit.purchase_timeout == 60
    full = purchases.parse(ENV)
    assert isinstance(full, purchases.Plan)
    assert (full.rate, full.duration, full.concurrency, full.poll_max) == (50, 60, 64, 1.0)


def test_down_needs_no_servers() -> None:
    assert purchases.parse(["--down"]) == "down"


def test_replicas_and_the_long_poll_are_in_the_plan() -> None:
    plan = purchases.parse([*ENV, "--replicas", "ordering=2", "--replicas", "inventory=3"])
    assert isinstance(plan, purchases.Plan)
    assert plan.replicas == {"ordering": 2, "inventory": 3}
    assert plan.partitions == 3 and not plan.poll
    polling = purchases.parse([*ENV, "--poll"])
    assert isinstance(polling, purchases.Plan)
    assert polling.poll and polling.replicas == {}
