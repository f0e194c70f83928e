"""Image files and pixels, one way for training, evaluation, projection and the notebook API.

    from flaxgan import images
    files = images.list_images("faces/")             # every readable kind, sorted, recursive
    rgb = images.read_image(files[0])                # uint8 [H, W, 3], EXIF orientation applied
    u8 = images.to_uint8(generated)                  # float [-1, 1] -> uint8, as the official
    images.grid(u8, cols=8).save("grid.png")

A folder is read the same everywhere: the same extensions (:data:`IMAGE_EXTENSIONS`, hidden
files skipped), the same decoding (grayscale, palette, CMYK, 16-bit and alpha images become
RGB, alpha dropped; the EXIF orientation applied) and the same order.
"""

from __future__ import annotations

import io
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageOps

from flaxgan.errors import InvalidArgument, UserError

__all__ = [
    "DECODE_ERRORS",
    "IMAGE_EXTENSIONS",
    "UnreadableImage",
    "grid",
    "image_size",
    "is_image_file",
    "list_images",
    "read_image",
    "to_pil",
    "to_uint8",
]

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".ppm", ".tif", ".tiff", ".webp")

# What a damaged or non-image file raises in PIL (UnidentifiedImageError is an OSError).
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)

_ROTATED = (5, 6, 7, 8)  # EXIF orientations that swap width and height.


class UnreadableImage(UserError, ValueError):
    """A file that does not decode as an image; the message names the file and the cause."""


def is_image_file(name: str | os.PathLike) -> bool:
    """Whether a file name has an image extension (any case) and is not hidden (`.name`)."""
    base = pathlib.PurePath(name).name
    return base.lower().endswith(IMAGE_EXTENSIONS) and not base.startswith(".")


def list_images(directory: str | os.PathLike) -> list[str]:
    """Image files under `directory` (recursive; files, or links to files), sorted by their
    path components relative to it (`a/z.png` before `a.b.png`, as `sorted(Path.rglob())`).

    Raises:
      FileNotFoundError: `directory` is not a folder.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory}: image folder not found")
    found = [os.path.join(root, f) for root, _, names in os.walk(directory) for f in names
             if is_image_file(f) and os.path.isfile(os.path.join(root, f))]
    return sorted(found, key=lambda f: pathlib.PurePath(os.path.relpath(f, directory)).parts)


def read_image(source: bytes | str | os.PathLike, name: str | None = None) -> np.ndarray:
    """Decodes an image file to uint8 `[H, W, 3]` RGB (EXIF orientation applied).

    Grayscale, palette, CMYK, 16-bit and alpha images are converted to RGB (alpha dropped).

    Args:
      source: encoded bytes or a path.
      name: file name for the error message (default: the path).

    Raises:
      UnreadableImage: one line naming the file and what went wrong.
    """
    label = name or (os.fspath(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        fp = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")
        with fp, Image.open(fp) as pil:
            pil.load()
            pil = ImageOps.exif_transpose(pil)
            if pil.mode in ("I;16", "I"):
                pil = Image.fromarray((np.asarray(pil, np.float64) / 257).astype(np.uint8))
            rgb = np.asarray(pil.convert("RGB"))
    except DECODE_ERRORS as e:
        raise UnreadableImage(f"{label}: not a readable image ({type(e).__name__}: {e})") from e
    if rgb.ndim != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise UnreadableImage(f"{label}: decoded to an empty image {rgb.shape}")
    return rgb


def image_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """`(H, W)` of an image as :func:`read_image` returns it (EXIF orientation applied), from
    the file's header alone; None when PIL cannot open it."""
    try:
        with Image.open(path) as im:
            h, w = im.height, im.width
            rotated = im.getexif().get(0x0112) in _ROTATED
    except DECODE_ERRORS:
        return None
    return (w, h) if rotated else (h, w)


def to_uint8(images: Any, rgb: bool = False) -> Any:
    """Generator output float `[..., H, W, C]` in [-1, 1] -> uint8 `clip(x * 127.5 + 128, 0,
    255)`, as the official code.

    Args:
      images: a numpy array (host) or a jax array (also traced, inside `jit`): the result is
        of the same kind.
      rgb: repeat a single (gray) channel to three, as the metrics' detectors see it.
    """
    xp = jnp if isinstance(images, jax.Array) else np
    u8 = xp.clip(xp.asarray(images, xp.float32) * 127.5 + 128, 0, 255).astype(xp.uint8)
    return xp.repeat(u8, 3, axis=-1) if rgb and u8.shape[-1] == 1 else u8


def to_pil(images: np.ndarray) -> list[Image.Image]:
    """float `[N, H, W, C]` in [-1, 1] (or uint8) -> PIL images (RGB, or L for C = 1)."""
    images = np.asarray(images)
    images = images if images.dtype == np.uint8 else to_uint8(images)
    return [Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im) for im in images]


def grid(images: Sequence[Image.Image | None] | np.ndarray, cols: int,
         background: int = 0) -> Image.Image:
    """Tiles equally sized images row-major into one image; `None` entries stay blank.

    Args:
      images: PIL images, or `[N, H, W, C]` float in [-1, 1] / uint8.
      cols: tiles per row.
      background: fill of blank tiles.
    """
    if isinstance(images, np.ndarray):
        images = to_pil(images)
    images = list(images)
    first = next((im for im in images if im is not None), None)
    if first is None:
        raise InvalidArgument("grid needs at least one image")
    if cols < 1:
        raise InvalidArgument(f"cols must be >= 1, got {cols}")
    w, h = first.size
    rows = -(-len(images) // cols)
    canvas = Image.new(first.mode, (cols * w, rows * h), background)
    for i, im in enumerate(images):
        if im is not None:
            canvas.paste(im, ((i % cols) * w, (i // cols) * h))
    return canvas
