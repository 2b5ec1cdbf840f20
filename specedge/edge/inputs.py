"""Where the edge's inputs come from: a dataset split, or a folder of image files, streamed lazily.

A camera delivers one frame at a time, and so do these sources: each yields
:class:`~specedge.edge.runtime.EdgeInput` items one by one, decoding a file only when its turn
comes. A file that cannot be decoded, or whose channels or size do not fit the models, becomes an
input that carries the reason instead of an image; the runtime gives it an error record and the
stream goes on (no silent resizing: a wrong size usually means the wrong folder or the wrong models).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from specedge.data.dataset import Dataset
from specedge.data.image_folder import IMAGE_SUFFIXES
from specedge.edge.runtime import DEFAULT_STREAM, EdgeInput
from specedge.errors import DatasetError

__all__ = ["dataset_inputs", "folder_inputs", "list_image_files"]


def dataset_inputs(
    dataset: Dataset,
    *,
    prefix: str = "",
    limit: int | None = None,
    stream: str = DEFAULT_STREAM,
    deadline_s: float | None = None,
) -> Iterator[EdgeInput]:
    """The images of a dataset split in order, named ``PREFIX<index>``."""
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for index in range(count):
        yield EdgeInput(f"{prefix}{index}", dataset.images[index], stream=stream, deadline_s=deadline_s)


def list_image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted by path; DatasetError if there are none."""
    if not folder.is_dir():
        raise DatasetError(f"image folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DatasetError(f"image folder {folder} holds no images (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _decode(path: Path, image_shape: tuple[int, int, int]) -> np.ndarray:
    """One file as uint8 ``(C, H, W)`` for models of ``image_shape``; DatasetError naming the file otherwise."""
    channels, height, width = image_shape
    try:
        with Image.open(path) as image:
            converted = image.convert("L" if channels == 1 else "RGB")
            pixels = np.asarray(converted, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot decode image {path}: {exc}") from exc
    if pixels.shape[:2] != (height, width):
        raise DatasetError(
            f"image {path} is {pixels.shape[1]}x{pixels.shape[0]} pixels; the models take {width}x{height}"
        )
    return pixels[None] if pixels.ndim == 2 else np.ascontiguousarray(pixels.transpose(2, 0, 1))


def folder_inputs(
    folder: Path,
    image_shape: tuple[int, int, int],
    *,
    limit: int | None = None,
    stream: str = DEFAULT_STREAM,
    deadline_s: float | None = None,
) -> Iterator[EdgeInput]:
    """Every image file under ``folder``, decoded when its turn comes; input ids are relative paths."""
    files = list_image_files(folder)
    for path in files[:limit]:
        input_id = path.relative_to(folder).as_posix()
        try:
            image = _decode(path, image_shape)
        except DatasetError as exc:
            yield EdgeInput(input_id, None, stream=stream, deadline_s=deadline_s, error=str(exc))
            continue
        yield EdgeInput(input_id, image, stream=stream, deadline_s=deadline_s)
