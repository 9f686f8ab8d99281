"""The masking step on a synthetic film: markers outside the lungs disappear, the lungs stay."""

import numpy as np

from edgelabels.runtime.masking import dilate, keep_lungs


def _film():
    image = np.full((100, 120), 90, np.uint8)
    image[30:70, 20:50] = 160  # left lung field
    image[30:70, 70:100] = 160  # right lung field
    image[5:12, 5:40] = 255  # a burned-in date/marker in the corner
    lungs = np.zeros((100, 120))
    lungs[30:70, 20:50] = 0.9
    lungs[30:70, 70:100] = 0.8
    return image, lungs


def test_marker_outside_the_lungs_is_blanked_and_the_lungs_are_kept():
    image, lungs = _film()
    out = keep_lungs(image, lungs, dilate_fraction=0.0)
    assert out[5:12, 5:40].max() == 0
    np.testing.assert_array_equal(out[30:70, 20:50], image[30:70, 20:50])
    np.testing.assert_array_equal(out[30:70, 70:100], image[30:70, 70:100])


def test_dilation_keeps_a_margin_around_the_lungs():
    image, lungs = _film()
    out = keep_lungs(image, lungs, dilate_fraction=0.05)  # 6 px on a 120 px film
    assert (out[25:30, 20:50] == 90).all() and out[20, 20] == 0
    assert dilate(np.eye(5, dtype=bool), 1).sum() == 25 - 6  # all but the two 3-pixel corners


def test_crop_cuts_to_the_lungs_bounding_box_and_colour_images_work():
    image, lungs = _film()
    out = keep_lungs(np.repeat(image[..., None], 3, axis=2), lungs, dilate_fraction=0.0, crop=True)
    assert out.shape == (40, 80, 3)


def test_no_lung_found_leaves_the_image_whole():
    image, _ = _film()
    np.testing.assert_array_equal(keep_lungs(image, np.zeros(image.shape)), image)
