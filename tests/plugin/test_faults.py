"""harness.faults on its own: what each switch answers the harness, and that clear disarms all of them.
Their effects on a running endpoint are asserted in team_image_tests.py (run by test_plugin.py)."""

from __future__ import annotations

from harness.faults import Faults


def test_nothing_is_armed_until_a_test_arms_it() -> None:
    faults = Faults()
    assert faults.start_delay_s("any:image") == 0.0
    assert not faults.vanished("s3://bucket/model.tar.gz")
    assert not faults.take_load_rejection()


def test_a_start_delay_for_one_image_wins_over_the_one_for_every_image() -> None:
    faults = Faults()
    faults.delay_start(2.0)
    faults.delay_start(5.0, "team:ci")
    assert (faults.start_delay_s("team:ci"), faults.start_delay_s("other:ci")) == (5.0, 2.0)


def test_load_rejections_are_used_up_one_load_at_a_time() -> None:
    faults = Faults()
    faults.reject_loads(2)
    assert [faults.take_load_rejection() for _ in range(3)] == [True, True, False]


def test_clear_disarms_every_fault() -> None:
    faults = Faults()
    faults.delay_start(1.0)
    faults.vanish("s3://bucket/a.tar.gz")
    faults.reject_loads(1)
    faults.clear()
    assert (faults.start_delay_s("x"), faults.vanished("s3://bucket/a.tar.gz"), faults.take_load_rejection()) == (
        0.0, False, False)
