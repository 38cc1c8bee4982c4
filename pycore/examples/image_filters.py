"""Filter a grayscale picture with hand-made kernels through pycore's conv2d.

    python -m pycore.examples.image_filters [--image PATH] [--out filters.png]

The network layer and the classic image filter are the same operation: a 2-D
cross-correlation. Here a (H, W) picture becomes a batch of one single-channel image,
(1, 1, H, W), each 2-D kernel a (1, 1, k, k) weight, and padding='same' keeps the size:

    filtered[i, j] = sum_{a, b} kernel[a, b] * image[i + a - k//2, j + b - k//2]   (zeros outside)

The picture is --image (read with Pillow), else matplotlib's sample photograph of Grace
Hopper, else a synthetic test card drawn with numpy. Writing the PNG needs matplotlib or
Pillow: `pip install "pycore[examples]"`.
"""
import argparse
import sys

import numpy as np

import pycore.functional as F

__all__ = ["KERNELS", "apply_filter", "filter_all", "load_image", "test_card", "save_panels", "main"]

_GAUSS_1D = np.array([1.0, 4.0, 6.0, 4.0, 1.0])
_SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])

# name -> (kernel, signed): signed filters (edges) have negative responses and are shown
# around mid-gray; the others are shown on the picture's own scale.
KERNELS = {
    "box blur 5x5": (np.full((5, 5), 1.0 / 25.0), False),
    "Gaussian blur 5x5": (np.outer(_GAUSS_1D, _GAUSS_1D) / 256.0, False),
    "sharpen": (np.array([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]]), False),
    "Sobel x (vertical edges)": (_SOBEL_X, True),
    "Sobel y (horizontal edges)": (_SOBEL_X.T.copy(), True),
    "Laplacian": (np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]), True),
}


def apply_filter(image, kernel):
    """Cross-correlate a (H, W) image with a (kH, kW) kernel, zero padding, output (H, W)."""
    image = np.asarray(image, dtype=np.float32)
    weight = np.asarray(kernel, dtype=np.float32)[None, None]          # (1, 1, kH, kW)
    return F.conv2d(image[None, None], weight, padding="same")[0, 0]


def filter_all(image, kernels=None):
    """{name: filtered (H, W) array} for every kernel in `kernels` (default KERNELS)."""
    kernels = KERNELS if kernels is None else kernels
    return {name: apply_filter(image, kernel) for name, (kernel, _) in kernels.items()}


def test_card(height=256, width=320):
    """A synthetic grayscale picture in [0, 1]: gradient, checkerboard, disc, bars, noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    card = 0.25 + 0.5 * x / width                                       # horizontal ramp
    card = np.where(((x // 32) + (y // 32)) % 2 == 0, card, card * 0.5)  # checkerboard
    disc = (x - 0.65 * width) ** 2 + (y - 0.5 * height) ** 2 < (0.25 * height) ** 2
    card = np.where(disc, 0.95, card)
    bars = (y > 0.8 * height) & ((x // 8) % 2 == 0)
    card = np.where(bars, 0.05, card)
    noise = np.random.default_rng(0).normal(0.0, 0.02, card.shape)
    return np.clip(card + noise, 0.0, 1.0).astype(np.float32)


def _to_gray(pixels):
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim == 3:                                                # RGB(A) -> luminance
        pixels = pixels[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return pixels / 255.0 if pixels.max() > 1.0 else pixels


def load_image(path=None):
    """(image (H, W) float32 in [0, 1], description). `path` needs Pillow."""
    if path is not None:
        try:
            from PIL import Image
        except ImportError:
            raise SystemExit('image_filters: reading --image needs Pillow: pip install "pycore[examples]"') from None
        with Image.open(path) as img:
            return _to_gray(img.convert("L")), str(path)
    try:
        import matplotlib.cbook
        from PIL import Image

        with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
            return _to_gray(img.convert("L")), "matplotlib sample data: grace_hopper.jpg"
    except Exception:  # noqa: BLE001 - any missing piece means: fall back to the test card
        return test_card(), "synthetic test card (numpy)"


def _display(array, signed):
    """Scale a filter response into [0, 1] for display: signed ones with 0 at mid-gray and
    their 99th percentile magnitude at black/white (a few strong edges would wash out the rest)."""
    if signed:
        scale = float(np.percentile(np.abs(array), 99)) or 1.0
        return np.clip(0.5 + 0.5 * array / scale, 0.0, 1.0)
    return np.clip(array, 0.0, 1.0)


def save_panels(image, results, out, kernels=None):
    """Write the original and each filtered picture side by side (2 rows) to the PNG `out`.

    Uses matplotlib when installed, else Pillow; returns the backend used. Raises
    ImportError (with the install hint) when neither is installed.
    """
    kernels = KERNELS if kernels is None else kernels
    panels = [("original", image)] + [(name, _display(results[name], kernels[name][1])) for name in results]
    cols = (len(panels) + 1) // 2
    try:
        from matplotlib.figure import Figure  # no pyplot: leaves the caller's backend alone

        have_matplotlib = True
    except ImportError:
        have_matplotlib = False
    if have_matplotlib:
        fig = Figure(figsize=(3.2 * cols, 6.4))
        axes = fig.subplots(2, cols)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, (name, panel) in zip(axes.ravel(), panels):
            ax.imshow(panel, cmap="gray", vmin=0.0, vmax=1.0)
            ax.set_title(name, fontsize=10)
        fig.suptitle("pycore.functional.conv2d(image, kernel, padding='same')")
        fig.tight_layout()
        fig.savefig(out, dpi=100)
        return "matplotlib"
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        raise ImportError('writing the PNG needs matplotlib or Pillow: pip install "pycore[examples]"') from None
    h, w = image.shape
    label = 16
    sheet = Image.new("L", (cols * w, 2 * (h + label)), color=255)
    draw = ImageDraw.Draw(sheet)
    for i, (name, panel) in enumerate(panels):
        x0, y0 = (i % cols) * w, (i // cols) * (h + label)
        sheet.paste(Image.fromarray((np.clip(panel, 0.0, 1.0) * 255).astype(np.uint8)), (x0, y0 + label))
        draw.text((x0 + 4, y0 + 2), name, fill=0)
    sheet.save(out)
    return "Pillow"


def main(argv=None):
    parser = argparse.ArgumentParser(description="Filter a picture with hand-made kernels through pycore's conv2d.")
    parser.add_argument("--image", help="a picture file (any format Pillow reads); default: a sample picture")
    parser.add_argument("--out", default="filters.png", help="the PNG to write (default: filters.png)")
    args = parser.parse_args(argv)

    image, source = load_image(args.image)
    print(f"image: {source}, {image.shape[0]} x {image.shape[1]} pixels")
    results = filter_all(image)
    for name, filtered in results.items():
        print(f"  {name:28s} range [{filtered.min():+.3f}, {filtered.max():+.3f}]")
    try:
        backend = save_panels(image, results, args.out)
    except ImportError as err:
        print(f"image_filters: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({backend})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
