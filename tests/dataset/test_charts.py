"""The Pillow chart renderer: round tick values, bins, and bars where the data puts them."""

import io

import pytest
from PIL import Image

from jobs.dataset.charts import Chart, bin_counts, tick_label, ticks


@pytest.mark.parametrize(("low", "high", "integer", "expected"), [
    (0, 1.05, False, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
    (0, 22785, False, [0, 5000, 10000, 15000, 20000]),
    (-0.7, 3.7, True, [0, 1, 2, 3]),
    (-0.7, 1.7, True, [0, 1]),
    (-1.13, 1.13, False, [-1.0, -0.5, 0, 0.5, 1.0]),
    (0, 13.65, False, [0, 2.5, 5, 7.5, 10, 12.5]),
    (3, 3, False, [3]),
])
def test_ticks_fall_on_round_numbers(low, high, integer, expected):
    assert ticks(low, high, integer=integer) == pytest.approx(expected)


def test_tick_labels_read_as_people_write_numbers():
    assert [tick_label(v) for v in (0.0, 0.2 + 0.1, 2.5, 20000.0, 3e7)] == ["0", "0.3", "2.5", "20000", "3e+07"]


def test_bins_cover_the_range_and_count_every_value():
    edges, counts = bin_counts([0.0, 0.1, 0.5, 0.99, 1.0], 4)
    assert edges == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
    assert counts == [2, 0, 1, 2]  # the maximum falls in the last bin
    assert bin_counts([2.0, 2.0], 2) == ([1.5, 2.0, 2.5], [0, 2])  # one value: a unit-wide range around it
    assert sum(bin_counts([], 3)[1]) == 0


def test_bars_and_histograms_are_drawn_where_the_data_puts_them():
    chart = Chart(400, 300, "title")
    panel = chart.panel((50, 40, 350, 240), (0, 10), (0, 4), "x", "y")
    panel.histogram([0, 5, 10], [4, 2], "#ff0000")
    panel.bars([1.0], [5], 0.5, "#0000ff")
    stream = io.BytesIO()
    chart.save(stream)
    image = Image.open(io.BytesIO(stream.getvalue())).convert("RGB")
    red, blue = (255, 0, 0), (0, 0, 255)
    # x 0..10 over 300 px: 30 px a unit; y 0..4 over 200 px: 50 px a unit, from the bottom at 240
    assert image.getpixel((panel.px(2.5), panel.py(3.5))) == red  # first bin, 4 high
    assert image.getpixel((panel.px(7.5), panel.py(1.5))) == red  # second bin, 2 high
    assert image.getpixel((panel.px(7.5), panel.py(2.5))) != red  # ... and no higher
    assert image.getpixel((panel.px(2.5), panel.py(1.0))) == blue  # the bar at row 1, 5 long, drawn last
    assert image.getpixel((panel.px(6.0), panel.py(1.0))) != blue
    assert (panel.px(0), panel.px(10), panel.py(0), panel.py(4)) == (50, 350, 240, 40)


def test_the_class_chart_widens_to_fit_long_class_names():
    from jobs.dataset.stats import ChartData, _classes_chart

    long_name = "a class name as long as a sentence about failed prints"
    charts = {}
    for names in (["cat", "dog"], [long_name, "dog"]):
        stream = io.BytesIO()
        _classes_chart(stream, ChartData(names, [5, 3], [4, 3], [1, 2, 0], [], [], [], []))
        charts[names[0]] = Image.open(io.BytesIO(stream.getvalue()))
    assert charts["cat"].size[1] == charts[long_name].size[1]
    widest = max(Chart.measure("cat"), Chart.measure("dog"))
    assert charts[long_name].size[0] - charts["cat"].size[0] >= Chart.measure(long_name) - widest - 1
