"""Pixels: how an image becomes the model input, and how human maps are aligned with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class InputGeometry:
    """How an image becomes the model's input: resize the shorter side to ``size / central_fraction``,
    then crop the central ``size x size`` square (pytorch-vqa: size 448, central_fraction 0.875)."""

    size: int = 448
    central_fraction: float = 0.875

    @property
    def resize_to(self) -> int:
        return int(round(self.size / self.central_fraction))


def _resize_and_crop(image: Image.Image, geometry: InputGeometry, resample) -> Image.Image:
    w, h = image.size
    scale = geometry.resize_to / min(w, h)
    new_w, new_h = max(geometry.size, round(w * scale)), max(geometry.size, round(h * scale))
    image = image.resize((new_w, new_h), resample)
    left, top = (new_w - geometry.size) // 2, (new_h - geometry.size) // 2
    return image.crop((left, top, left + geometry.size, top + geometry.size))


IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def load_image(path: Path, geometry: InputGeometry) -> np.ndarray:
    """The model input for one image file: ``[3, size, size]`` float32, ImageNet-normalised.

    Grayscale, CMYK and palette JPEGs are converted to RGB.
    """
    with Image.open(path) as image:
        rgb = _resize_and_crop(image.convert("RGB"), geometry, Image.BILINEAR)
    array = np.asarray(rgb, np.float32) / 255.0
    return ((array - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy()


def load_display_image(path: Path, geometry: InputGeometry) -> np.ndarray:
    """The model's view of an image for figures: ``[size, size, 3]`` uint8."""
    with Image.open(path) as image:
        return np.asarray(_resize_and_crop(image.convert("RGB"), geometry, Image.BILINEAR))


def image_problem(path: Path) -> str:
    """ "" for an image file that decodes, else what is wrong with it ("empty (0 bytes)", "truncated
    ...", "not an image ..."). A JPEG is decoded in full only when it does not end with the JPEG
    end-of-image marker, so checking a folder of good images reads little more than their headers."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if size == 0:
        return "empty (0 bytes)"
    try:
        with Image.open(path) as image:
            if image.format == "JPEG":
                with open(path, "rb") as handle:
                    handle.seek(max(0, size - 64))
                    if b"\xff\xd9" in handle.read():
                        return ""
            image.load()  # raises on a truncated or corrupt file (truncated images are not accepted)
    except OSError as exc:
        message = str(exc)
        if "truncated" in message:
            return f"truncated ({size} bytes; {message})"
        if "cannot identify" in message:
            return f"not an image ({size} bytes)"
        return f"not decodable ({message})"
    except Exception as exc:  # Pillow raises other types for some corrupt streams
        return f"not decodable ({type(exc).__name__}: {exc})"
    return ""


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, without decoding its pixels."""
    with Image.open(path) as image:
        return image.size


def load_human_maps(paths: Sequence[Path], image_wh: tuple[int, int], geometry: InputGeometry) -> np.ndarray:
    """Human maps aligned with the model input: ``[n_annotators, size, size]`` float32 in [0, 1].

    Each map is first resized to its image's size (VQA-HAT maps need not match it), then cropped
    exactly like the image, so that map pixel (i, j) and attribution pixel (i, j) are the same spot.
    """
    aligned = []
    for path in paths:
        with Image.open(path) as image:
            if image.mode in HIGH_DEPTH_MODES:  # 16/32-bit grey: read at its depth (convert("L") saturates)
                unit = Image.fromarray(high_depth_to_unit(image), mode="F").resize(image_wh, Image.BILINEAR)
                aligned.append(np.asarray(_resize_and_crop(unit, geometry, Image.BILINEAR), np.float32))
                continue
            grey = image.convert("L").resize(image_wh, Image.BILINEAR)  # 1-bit, palette, RGB(A): 8-bit grey
            aligned.append(np.asarray(_resize_and_crop(grey, geometry, Image.BILINEAR), np.float32) / 255.0)
    return np.stack(aligned)


HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def high_depth_to_unit(image: Image.Image) -> np.ndarray:
    """A 16-bit (or 32-bit) grey map as float32 in [0, 1]: divided by 65535 when its values fit 16
    bits (a 16-bit PNG opens as ``I;16`` or ``I``), else by its maximum."""
    values = np.asarray(image, np.float64)
    top = 65535.0 if values.max() <= 65535 and values.min() >= 0 else max(float(values.max()), 1e-12)
    return (values / top).astype(np.float32)
