"""Images a user brings rather than a model: a folder of PNG / JPEG files, or a `.npy` / `.npz`
array, read as the platform holds images, uint8 (N, C, H, W). Checked as read: one size and
one mode for every file, an array's layout and range; one line naming the file otherwise."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from latentatlas.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# PIL modes read as gray or as RGB; alpha is dropped, a palette is expanded to RGB (to gray
# when every colour in it is a gray)
MODES = {"L": "L", "LA": "L", "1": "L", "RGB": "RGB", "RGBA": "RGB", "P": "RGB", "CMYK": "RGB"}


def read_images(path: str | Path, role: str = "--images") -> np.ndarray:
    """uint8 (N, C, H, W) images from a folder of PNG / JPEG files (in file-name order) or
    from a `.npy` / `.npz` array."""
    path = Path(path).expanduser()
    if path.is_dir():
        return read_folder(path, role)
    if not path.is_file():
        raise UserError(f"{role} {path}: no such file or folder")
    if path.suffix.lower() in (".npy", ".npz"):
        return read_array(path, role)
    raise UserError(f"{role} {path}: neither a folder of {'/'.join(IMAGE_SUFFIXES)} files nor a "
                    ".npy / .npz array")


def read_folder(folder: Path, role: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{role} {folder}: no {', '.join(IMAGE_SUFFIXES)} files in the folder")
    images, first = [], None
    for file in files:
        try:
            with Image.open(file) as img:
                if img.mode not in MODES:
                    raise UserError(f"{role} {file}: {img.mode} pixels; 8-bit gray or RGB "
                                    "images are read")
                pixels = np.asarray(img.convert(MODES[img.mode]))
                mode = MODES[img.mode]
                if img.mode == "P" and (pixels == pixels[..., :1]).all():
                    pixels, mode = pixels[..., 0], "L"  # a gray palette
                found = (mode, img.size)
        except (OSError, UnidentifiedImageError) as e:
            raise UserError(f"{role} {file}: not a readable image ({e})") from None
        if first is None:
            first = found
        elif found != first:
            raise UserError(f"{role} {file}: {found[0]} {found[1][0]}x{found[1][1]}, the first "
                            f"file ({files[0].name}) is {first[0]} {first[1][0]}x{first[1][1]}")
        images.append(pixels)
    stacked = np.stack(images)
    return stacked[:, None] if stacked.ndim == 3 else stacked.transpose(0, 3, 1, 2).copy()


def read_array(path: Path, role: str) -> np.ndarray:
    where = f"{role} {path}"
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # .npy
            array = loaded
        else:
            with loaded:
                names = loaded.files
                key = names[0] if len(names) == 1 else next(
                    (k for k in ("images", "arr_0") if k in names), None)
                if key is None:
                    raise UserError(f"{where}: arrays {', '.join(names)}; name the images "
                                    "'images' (or save one array)")
                where, array = f"{where}[{key}]", loaded[key]
    except UserError:
        raise
    except Exception as e:  # not numpy's format, pickled objects, truncated
        raise UserError(f"{where}: not a numpy array file ({str(e).splitlines()[0][:100]})") \
            from None
    return as_uint8_images(array, where)


def as_uint8_images(array: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W), (N, H, W, C) or (N, C, H, W) with C 1 or 3 (a 4th, alpha, channel is
    dropped, as it is from files); uint8 or other integers within 0..255, or floats in [0, 1]
    (rounded to 8 bits in their own precision, as a model's samples are). A layout that reads
    two ways is refused rather than guessed."""
    if array.ndim == 4 and array.shape[-1] == 4 and array.shape[1] not in (1, 3, 4):
        array = array[..., :3]
    if array.ndim == 3 and array.shape[-1] in (1, 3, 4) and array.shape[1] > 4:
        raise UserError(f"{where}: shape {array.shape} reads as one H x W x C image or as "
                        f"{array.shape[0]} gray images {array.shape[1]} x {array.shape[2]}; "
                        "save images as (N, H, W, C) or (N, C, H, W)")
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[1] in (1, 3) and array.shape[3] in (1, 3):
        raise UserError(f"{where}: shape {array.shape} reads as (N, C, H, W) or as "
                        "(N, H, W, C); save it as (N, C, H, W)")
    elif array.ndim == 4 and array.shape[1] not in (1, 3) and array.shape[3] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    elif array.ndim != 4 or array.shape[1] not in (1, 3):
        raise UserError(f"{where}: shape {array.shape}; images are (N, H, W), (N, H, W, C) or "
                        "(N, C, H, W) with C 1 or 3")
    if len(array) == 0 or array.size == 0:
        raise UserError(f"{where}: no images (shape {array.shape})")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise UserError(f"{where}: holds NaN or inf")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 1:
            raise UserError(f"{where}: floats in [{low:.3g}, {high:.3g}]; images as floats are "
                            "in [0, 1] (a tanh output: (x + 1) / 2)")
        # float32 rounds as the model path's torch.round(255 x) does: bit for bit
        x = array.astype(np.float32) if array.dtype.itemsize < 4 else array
        return np.ascontiguousarray(np.round(x * x.dtype.type(255)).astype(np.uint8))
    if not np.issubdtype(array.dtype, np.integer):
        raise UserError(f"{where}: {array.dtype} values; images are uint8, integers in 0..255 "
                        "or floats in [0, 1]")
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > 255:
        raise UserError(f"{where}: {array.dtype} values in {low}..{high}; images are uint8, "
                        "integers in 0..255 or floats in [0, 1]")
    if high <= 1:
        raise UserError(f"{where}: integers in {low}..{high}; 8-bit images are 0..255 (binary "
                        "images: multiply by 255)")
    return np.ascontiguousarray(array.astype(np.uint8))
