"""The link model's arithmetic reproduces the reference figures (BLE_NOTES.md)."""

from __future__ import annotations

import pytest

from hil.radio_model import (
    LinkModel,
    exchange_time_us,
    fragments,
    modelled_throughput_bps,
    pdu_time_us,
)


def test_air_time_per_full_pdu() -> None:
    assert exchange_time_us(0, 251, "2M") == pytest.approx(1392)
    assert exchange_time_us(0, 251, "1M") == pytest.approx(2468)
    assert pdu_time_us(0, "2M") == pytest.approx(44)
    assert pdu_time_us(251, "1M", encrypted=True) == pytest.approx(2120)


@pytest.mark.parametrize(("model", "reference"), [
    (LinkModel(phy="2M", interval_ms=7.5), 1.30),
    (LinkModel(phy="1M", interval_ms=7.5), 0.78),
    (LinkModel(phy="1M", interval_ms=7.5, dle=False), 0.26),
    (LinkModel(phy="2M", interval_ms=7.5, max_pdus_per_event=4), 1.04),
])
def test_reference_throughputs(model: LinkModel, reference: float) -> None:
    for enc in (False, True):
        assert modelled_throughput_bps(model, 244, encrypted=enc) / 1e6 == pytest.approx(
            reference, rel=0.05)


def test_fragments() -> None:
    assert fragments(251, 251) == [251]
    assert fragments(251, 27) == [27] * 9 + [8]
    assert sum(fragments(100, 27)) == 100


def test_model_validation() -> None:
    with pytest.raises(ValueError, match="phy"):
        LinkModel(phy="3M")
    with pytest.raises(ValueError, match="unknown"):
        LinkModel.from_json({"phy": "2M", "speed": 3})
    m = LinkModel.from_json({"phy": "1M", "outages": [[1, 2]]})
    assert m.outages == [(1.0, 2.0)]
    assert LinkModel.from_json(m.to_json()) == m
