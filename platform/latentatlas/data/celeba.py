"""CelebA from its aligned-image folder, with the Dai & Wipf crop and the 40 attributes. Two
layouts: the original (`img_align_celeba/`, `list_eval_partition.txt`, `list_attr_celeba.txt`)
and Kaggle's (`img_align_celeba/img_align_celeba/`, the same lists as `.csv` with a header
row)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latentatlas.data.base import Split, register, require_file
from latentatlas.errors import UserError

CROP = (slice(45, 173), slice(25, 153))  # rows, columns: 128x128 around the face
SIZE = 64
PARTITION = {"train": 0, "valid": 1, "test": 2}


def fields_of(line: str, csv: bool) -> list[str]:
    return [f.strip() for f in line.split(",")] if csv else line.split()


def list_file(folder: Path, stem: str) -> Path:
    """The original `.txt` list, else Kaggle's `.csv` (the missing one named as the first)."""
    txt = folder / f"{stem}.txt"
    return txt if txt.is_file() or not (folder / f"{stem}.csv").is_file() else \
        folder / f"{stem}.csv"


def read_partition(path: Path) -> dict[str, int]:
    csv = path.suffix == ".csv"
    lines = require_file(path, "CelebA partition list").read_text().splitlines()
    parts = {}
    for n, line in enumerate(lines[1:] if csv else lines, start=2 if csv else 1):
        fields = fields_of(line, csv)
        if not any(fields):
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise UserError(f"{path}:{n}: expected '<file> <0|1|2>', got {line!r}")
        parts[fields[0]] = int(fields[1])
    return parts


def read_attributes(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Original: a count line, a header of 40 names, rows; Kaggle: `image_id,<names>`, rows."""
    csv = path.suffix == ".csv"
    lines = require_file(path, "CelebA attribute list").read_text().splitlines()
    header = 0 if csv else 1
    if len(lines) <= header:
        raise UserError(f"{path}: expected " + ("a header line" if csv else
                                                "a count line and a header line"))
    names = fields_of(lines[header], csv)[1 if csv else 0:]
    rows = {}
    for n, line in enumerate(lines[header + 1:], start=header + 2):
        fields = fields_of(line, csv)
        if not any(fields):
            continue
        if len(fields) != len(names) + 1 or any(v not in ("1", "-1") for v in fields[1:]):
            raise UserError(f"{path}:{n}: expected a file name and {len(names)} values of 1/-1")
        rows[fields[0]] = (np.array(fields[1:], dtype=np.int8) > 0).astype(np.int8)
    return names, rows


def crop_and_resize(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return crop_face(path, img.convert("RGB"))  # convert() decodes the whole file
    except (OSError, Image.DecompressionBombError) as e:  # truncated, or not an image at all
        raise UserError(f"{path}: not a readable image ({str(e).splitlines()[0]})") from None


def crop_face(path: Path, img) -> np.ndarray:
    from PIL import Image

    if img.height < CROP[0].stop or img.width < CROP[1].stop:
        raise UserError(f"{path}: image is {img.width}x{img.height}; the CelebA crop needs "
                        f"at least {CROP[1].stop}x{CROP[0].stop} (aligned 178x218 images)")
    face = img.crop((CROP[1].start, CROP[0].start, CROP[1].stop, CROP[0].stop))
    face = face.resize((SIZE, SIZE), Image.BILINEAR)
    return np.asarray(face, dtype=np.uint8).transpose(2, 0, 1)


@register("celeba", ("train", "valid", "test"), "CelebA folder (img_align_celeba/, lists)")
def celeba(path, split, limit):
    if path is None:
        raise UserError("data.path: the celeba source needs the CelebA folder")
    image_dir = path / "img_align_celeba"
    if (image_dir / "img_align_celeba").is_dir():  # Kaggle's archive nests it
        image_dir = image_dir / "img_align_celeba"
    if not image_dir.is_dir():
        raise UserError(f"{image_dir}: CelebA image folder not found")
    parts = read_partition(list_file(path, "list_eval_partition"))
    attribute_list = list_file(path, "list_attr_celeba")
    names, attributes = read_attributes(attribute_list)
    files = sorted(f for f, p in parts.items() if p == PARTITION[split])
    if limit is not None:
        files = files[:limit]
    missing = [f for f in files if f not in attributes]
    if missing:
        raise UserError(f"{attribute_list}: no attributes for {missing[0]}")
    images = np.stack([crop_and_resize(require_file(image_dir / f, "CelebA image"))
                       for f in files]) if files else np.zeros((0, 3, SIZE, SIZE), np.uint8)
    table = np.stack([attributes[f] for f in files]) if files else np.zeros((0, len(names)))
    attrs = {name: table[:, i].astype(np.int8) for i, name in enumerate(names)}
    return Split("celeba", split, images, np.full(len(files), -1, np.int64), attrs,
                 source=str(image_dir.resolve()))
