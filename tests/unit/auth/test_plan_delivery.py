"""Plans' delay and minimum interval, and the subscribe options that ask for conflation."""

from __future__ import annotations

import pytest

from wagerwire.auth.plans import parse_plans
from wagerwire.dialects import native
from wagerwire.errors import BadParameter


def test_plan_delay_and_min_interval_parse_and_bounds() -> None:
    plans = parse_plans({"free": {"delay_s": 30, "min_conflate_ms": 1000}})
    assert plans["free"].delay_ms == 30_000 and plans["free"].min_conflate_ms == 1000
    assert plans["free"].max_streams == 1  # the rest of the default plan is kept
    assert parse_plans({})["pro+"].delay_ms == 0
    for bad in ({"delay_s": -1}, {"delay_s": 4000}, {"min_conflate_ms": 200_000}):
        with pytest.raises(BadParameter):
            parse_plans({"x": bad})


def test_subscribe_options_are_checked() -> None:
    op = native.parse_op('{"op":"subscribe","channels":["odds:a:b"],"image":true,'
                         '"conflate_ms":500}')
    assert isinstance(op, native.Subscribe) and op.image and op.conflate_ms == 500
    again = native.parse_op('{"op":"subscribe","channels":["odds:a:b"],"image":true,'
                            '"conflate_ms":500}')  # the remembered parse keeps them
    assert isinstance(again, native.Subscribe) and again.image and again.conflate_ms == 500
    for bad in ('"conflate_ms":-1', '"conflate_ms":120001', '"conflate_ms":"5"',
                '"conflate_ms":true', '"image":"yes"'):
        with pytest.raises(BadParameter):
            native.parse_op('{"op":"subscribe","channels":["odds:a:b"],' + bad + "}")
