"""What an accelerator's hour costs on Vertex AI: its accelerator plus its machine type, for every replica."""

from __future__ import annotations

import pytest

from jobs.launch.accelerators import ACCELERATORS, MACHINE_PRICES


@pytest.mark.parametrize("spot", [False, True], ids=["on-demand", "spot"])
@pytest.mark.parametrize("name", list(ACCELERATORS))
def test_an_estimate_whose_parts_are_all_known_is_accelerator_plus_machine_times_replicas(monkeypatch, name, spot):
    accelerator = ACCELERATORS[name]
    monkeypatch.setitem(MACHINE_PRICES, accelerator.machine_type, (0.75, 0.25))  # a price as the table would hold it
    part = accelerator.spot_usd_per_hour if spot else accelerator.usd_per_hour
    price = accelerator.hourly(spot, replicas=3)
    if part is None:  # no price kept for the accelerator (A100, H100 Spot): named, never guessed
        assert price.total is None and price.known == pytest.approx(3 * (0.25 if spot else 0.75))
        assert price.unknown == (f"{name} accelerator ({'Spot' if spot else 'on-demand'})",)
    else:
        assert price.total == pytest.approx(3 * (part + (0.25 if spot else 0.75))) and price.unknown == ()


def test_the_tables_as_kept_give_a_total_only_when_every_part_is_known():
    for accelerator in ACCELERATORS.values():
        for spot in (False, True):
            machine = MACHINE_PRICES[accelerator.machine_type][1 if spot else 0]
            part = accelerator.spot_usd_per_hour if spot else accelerator.usd_per_hour
            price = accelerator.hourly(spot, replicas=2)
            if part is None or machine is None:
                assert price.total is None and price.unknown
            else:
                assert price.total == pytest.approx(2 * (part + machine))
