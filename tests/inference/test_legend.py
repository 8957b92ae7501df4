"""The overlay legend: lesion colours and names, threshold and model, in the corner outside the field of view."""

from __future__ import annotations

import numpy as np

from monai_exudate.inference.legend import draw_legend


def test_legend_box_scales_with_the_photograph_and_shows_each_lesion_colour():
    for height, width in ((480, 720), (2848, 4288)):
        photo = np.full((height, width, 3), 90, np.uint8)
        colours = [(255, 230, 0), (220, 0, 0)]
        out = draw_legend(photo, ["EX", "HE"], colours, 0.5, "DualUNet, trained on IDRiD")
        assert out.shape == photo.shape and out.dtype == np.uint8
        rows, cols = np.nonzero((out != photo).any(axis=2))
        # a box in the bottom-left corner, its height a small share of the photograph's
        assert rows.max() == height - 1 and cols.min() == 0
        assert rows.min() > height * 0.75 and cols.max() < width * 0.5
        for colour in colours:
            assert (out == np.array(colour, np.uint8)).all(axis=2).sum() > 50  # the swatch
        assert (photo == 90).all()  # the input is not modified


def test_side_by_side_overlay_puts_the_photograph_left_of_the_painted_one():
    from monai_exudate.inference.writers import compose_overlay, paint_overlay

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    masks = np.zeros((1, 40, 60), bool)
    masks[0, 10:20, 30:40] = True
    legend = {"lesion_names": ["EX"], "threshold": 0.5, "model": "demo"}
    alone = compose_overlay(photo, masks, [(255, 230, 0)], legend=legend)
    both = compose_overlay(photo, masks, [(255, 230, 0)], legend=legend, side_by_side=True)
    assert both.shape == (40, 120, 3)
    assert np.array_equal(both[:, :60], photo) and np.array_equal(both[:, 60:], alone)
    assert np.array_equal(compose_overlay(photo, masks, [(255, 230, 0)]), paint_overlay(photo, masks, [(255, 230, 0)]))


def test_one_threshold_per_lesion_is_written_on_each_lesion_line():
    photo = np.full((720, 1080, 3), 90, np.uint8)
    colours = [(255, 230, 0), (220, 0, 0)]
    shared = draw_legend(photo, ["EX", "HE"], colours, [0.3, 0.3], "model")
    own = draw_legend(photo, ["EX", "HE"], colours, [0.3, 0.2], "model")
    assert np.array_equal(shared, draw_legend(photo, ["EX", "HE"], colours, 0.3, "model"))  # one line "p > 0.30"
    box = lambda out: np.nonzero((out != photo).any(axis=2))  # noqa: E731
    # the lesion lines grow by their threshold and the separate threshold line goes: wider and shorter
    assert box(own)[1].max() > box(shared)[1].max() and box(own)[0].min() > box(shared)[0].min()
