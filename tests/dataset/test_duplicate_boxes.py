"""The duplicate-box check searches a grid, not every pair, and finds exactly what the pairwise check found."""

from __future__ import annotations

import sys
from collections import Counter

import pytest
from box_sets import (
    degenerate_boxes,
    identical_boxes,
    lattice_boxes,
    nested_boxes,
    pairwise_drop_duplicates,
    random_boxes,
    straddling_boxes,
    threshold_boxes,
)

from jobs.dataset import validate
from jobs.dataset.findings import Report
from jobs.dataset.validate import drop_duplicates


def same_as_pairwise(boxes) -> tuple[list, Counter]:
    """The kept boxes and the count of findings by rule, after checking they are the pairwise check's."""
    expected, found = Report(), Report()
    kept = drop_duplicates(boxes, found)
    assert kept == pairwise_drop_duplicates(boxes, expected)
    assert found.findings == expected.findings  # the same boxes dropped, in the same order, with the same messages
    return kept, found.counts()


@pytest.mark.parametrize("seed", range(12))
def test_random_boxes(seed):
    image = (300.0, 1000.0, 4000.0)[seed % 3]  # from every box overlapping dozens to few overlaps
    kept, counts = same_as_pairwise(random_boxes(1500, seed, image=image))
    assert counts["B007"] > 10 and counts["B008"] > 10 and len(kept) > 500


def test_many_identical_boxes():
    kept, counts = same_as_pairwise(identical_boxes(3000))
    assert len(kept) == 2 and counts["B007"] > 1500 and counts["B008"] > 500  # one per class


@pytest.mark.parametrize("seed", range(4))
def test_nested_boxes(seed):
    kept, counts = same_as_pairwise(nested_boxes(1000, seed))
    assert counts["B008"] > 200 and len(kept) > 100


@pytest.mark.parametrize("seed", range(4))
def test_boxes_straddling_size_levels_and_cells(seed):
    kept, counts = same_as_pairwise(straddling_boxes(seed))
    assert counts["B008"] > 100 and len(kept) > 100


def test_boxes_at_the_threshold():
    kept, counts = same_as_pairwise(threshold_boxes())
    assert counts["B008"] > 20 and len(kept) > 10


@pytest.mark.parametrize("step", [0.5, 2.0, 2.6, 5.0])  # IoU with the next box 0.990, 0.961, 0.949, 0.905
def test_lattices(step):
    kept, counts = same_as_pairwise(lattice_boxes(30, step))
    assert (len(kept) == 900) == (step > 2.56)


def test_degenerate_boxes_and_boxes_beyond_the_grid():
    kept, counts = same_as_pairwise(degenerate_boxes())
    assert counts["B007"] and counts["B008"]


def lines_run_per_box(boxes) -> float:
    """Lines of the search (``_KeptBoxes.first_overlapping``) run per box: its work, whatever the machine's load."""
    search, lines = validate._KeptBoxes.first_overlapping.__code__, 0

    def count(frame, event, arg):
        nonlocal lines
        lines += event == "line"
        return count

    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: count if frame.f_code is search else None)
    try:
        drop_duplicates(boxes, Report())
    finally:
        sys.settrace(previous)
    return lines / len(boxes)


@pytest.mark.parametrize("boxes", [
    lambda n: random_boxes(n, 1, image=40.0 * n ** 0.5),  # the same density at every count
    lambda n: lattice_boxes(round(n ** 0.5), 2.6),  # every box kept, each with dozens of kept neighbours
    lambda n: lattice_boxes(round(n ** 0.5), 0.3),  # nearly every box dropped
    lambda n: nested_boxes(n, 1, spread=40.0 * n ** 0.5),
    identical_boxes,
], ids=["random", "kept-lattice", "dropped-lattice", "nested", "identical"])
def test_work_per_box_does_not_grow_with_the_count(boxes):
    """At 4 times the boxes the pairwise check does 4 times the work per box; the grid search the same."""
    small, large = lines_run_per_box(boxes(4000)), lines_run_per_box(boxes(16000))
    assert large < 1.2 * small + 2, (small, large)
