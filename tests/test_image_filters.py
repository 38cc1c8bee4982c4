"""The image-filter example: its conv2d results against a naive 2-D loop, and the PNG it writes."""
import importlib.util

import numpy as np
import pytest

from pycore.examples import image_filters


def naive_filter(image, kernel):
    """Zero-padded 'same' cross-correlation, PyTorch's split of the padding, by direct loops."""
    kh, kw = kernel.shape
    top, left = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(image.astype(np.float64), ((top, kh - 1 - top), (left, kw - 1 - left)))
    out = np.zeros(image.shape)
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            out[i, j] = np.sum(padded[i:i + kh, j:j + kw] * kernel)
    return out


def test_filters_match_naive_reference():
    image = image_filters.test_card(24, 30)
    results = image_filters.filter_all(image)
    assert list(results) == list(image_filters.KERNELS)
    for name, (kernel, _) in image_filters.KERNELS.items():
        assert results[name].shape == image.shape and results[name].dtype == np.float32
        np.testing.assert_allclose(results[name], naive_filter(image, kernel), rtol=1e-5, atol=1e-5, err_msg=name)


def test_filters_do_what_they_say():
    image = image_filters.test_card(40, 40)
    r = image_filters.filter_all(image)
    flat = np.full((9, 9), 0.7, np.float32)
    np.testing.assert_allclose(image_filters.apply_filter(flat, image_filters.KERNELS["Laplacian"][0])[1:-1, 1:-1],
                               0.0, atol=1e-6)                 # no response to a flat interior
    assert r["box blur 5x5"].std() < image.std()               # blurs smooth
    assert r["sharpen"].std() > image.std()                    # sharpening amplifies detail


@pytest.mark.skipif(not (importlib.util.find_spec("matplotlib") or importlib.util.find_spec("PIL")),
                    reason="needs matplotlib or Pillow (pip install 'pycore[examples]')")
def test_main_writes_png(tmp_path, monkeypatch):
    monkeypatch.setattr(image_filters, "load_image", lambda path=None: (image_filters.test_card(48, 64), "card"))
    out = tmp_path / "filters.png"
    assert image_filters.main(["--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
