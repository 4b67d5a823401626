"""The real side's statistics as a file: pytorch-fid's `.npz` (mu, sigma) with what they were
computed on (extractor, its weights' digest, the images, their pixel variance), written
atomically and checked when read back."""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

import numpy as np

from latentatlas.features import Extractor, image_features, uint8_pixel_variance
from latentatlas.frechet import Reference


def described_images(dataset: str, split: str, rows: int) -> str:
    """What a reference of real images is of, as its runs record it."""
    return f"{dataset}:{split}, {rows} images"


def reference_of(extractor: Extractor, images: np.ndarray, described: str,
                 **where) -> Reference:
    """The reference of uint8 real `images` (N, C, H, W) in the extractor's space."""
    features = checked_features(image_features(extractor.shared, len(images), images=images,
                                               **where), described)
    return Reference.of(features, described, pixel_variance=uint8_pixel_variance(images),
                        extractor=extractor.name, weights_sha256=extractor.digest)


def checked_features(features: np.ndarray, what: str) -> np.ndarray:
    from latentatlas.errors import UserError

    if not np.isfinite(features).all():
        raise UserError(f"{what}: the feature network returns NaN or inf on these images (a "
                        "model that decodes NaN?)")
    if len(features) < 2:
        raise UserError(f"{what}: {len(features)} image; FID needs at least 2")
    return features


# pytorch-fid's file holds `mu` and `sigma`; these keys say what LatentAtlas knows beside.
STATS_KEYS = ("count", "extractor", "weights_sha256", "described", "pixel_variance")


def write_reference(reference: Reference, path: str | Path,
                    role: str = "--save-ref-stats") -> Path:
    """`reference` as pytorch-fid's `.npz` (`mu`, `sigma`, float64) with LatentAtlas' own keys
    beside; written to a temporary file and renamed, or not at all."""
    from latentatlas.errors import UserError
    from latentatlas.outputs import writing

    path = Path(path)
    known = {k: getattr(reference, k) for k in STATS_KEYS if getattr(reference, k) is not None}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    need = reference.mu.nbytes + reference.sigma.nbytes + 4096  # (+ the zip's headers)
    try:
        with writing(path, need, partial=[tmp]):
            with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
                np.savez(f, mu=reference.mu, sigma=reference.sigma, **known)
            os.replace(tmp, path)
    except UserError as e:
        raise UserError(f"{role} {e}") from None
    except OSError as e:
        raise UserError(f"{role} {path}: cannot write it ({e.strerror or e})") from None
    finally:
        with contextlib.suppress(OSError):  # a read-only folder refuses even this
            tmp.unlink(missing_ok=True)
    return path


def check_writable(path: str | Path, role: str = "--save-ref-stats") -> Path:
    """Refuses, before any work, a path `write_reference` could not write."""
    from latentatlas.errors import UserError

    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{role} {path}: a folder; give a file name (e.g. ref.npz)")
    if not path.parent.is_dir():
        raise UserError(f"{role} {path}: no such folder {path.parent}")
    if not os.access(path.parent, os.W_OK):
        raise UserError(f"{role} {path}: the folder {path.parent} is not writable")
    return path


def stats_value(arrays: dict, key: str, where: str):
    """One of LatentAtlas' own keys of a statistics file, checked: a 0-d count >= 2, a
    finite pixel variance in [0, 0.25] (images in [0, 1]), or a string."""
    from latentatlas.errors import UserError

    value = arrays[key]
    kind = {"count": "an integer of at least 2", "pixel_variance": "a number in [0, 0.25]"}.get(
        key, "a string")
    if value.ndim == 0:
        if key == "count" and np.issubdtype(value.dtype, np.integer) and value >= 2:
            return int(value)
        if key == "pixel_variance" and np.issubdtype(value.dtype, np.floating) and \
                np.isfinite(value) and 0 <= value <= 0.25:
            return float(value)
        if key not in ("count", "pixel_variance") and value.dtype.kind == "U":
            return str(value)
    raise UserError(f"{where}: key {key!r} is {value.dtype} {value.shape} ({value!r:.40}), not "
                    f"{kind}")


def read_reference(path: str | Path, extractor: Extractor, role: str = "--ref-stats"
                   ) -> Reference:
    """A `.npz` of `mu` and `sigma` (pytorch-fid's, or ours) checked against the extractor:
    shapes, finite values, a symmetric positive semi-definite sigma, LatentAtlas' own keys
    where present and, where the file says, the same extractor and weights; one line naming
    the file and what is wrong otherwise."""
    from latentatlas.errors import UserError

    path = Path(path).expanduser()
    where = f"{role} {path}"
    if not path.is_file():
        raise UserError(f"{where}: file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # not a zip, truncated, pickled objects
        raise UserError(f"{where}: not a .npz of arrays ({str(e).splitlines()[0][:100]})") \
            from None
    for key in ("mu", "sigma"):
        if key not in arrays:
            raise UserError(f"{where}: no {key!r} array (pytorch-fid's statistics hold mu and "
                            f"sigma; found {', '.join(sorted(arrays)) or 'nothing'})")
    mu, sigma = (np.asarray(arrays[k], np.float64) for k in ("mu", "sigma"))
    width = extractor.features
    if mu.shape != (width,) or sigma.shape != (width, width):
        raise UserError(f"{where}: mu {mu.shape} and sigma {sigma.shape}; {extractor.name} "
                        f"has {width} features, so ({width},) and ({width}, {width})")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise UserError(f"{where}: mu or sigma holds NaN or inf")
    scale = np.abs(sigma).max()
    if not np.allclose(sigma, sigma.T, rtol=1e-6, atol=1e-9 * scale):
        raise UserError(f"{where}: sigma is not symmetric, so not a covariance")
    lowest = np.linalg.eigvalsh(sigma).min()
    if lowest < -1e-6 * scale:  # a covariance has none below 0 but rounding's
        raise UserError(f"{where}: sigma has eigenvalue {lowest:.3g} < 0, so not a covariance")
    known = {k: stats_value(arrays, k, where) for k in STATS_KEYS if k in arrays}
    for key, ours in (("extractor", extractor.name), ("weights_sha256", extractor.digest)):
        if key in known and known[key] != ours:
            raise UserError(f"{where}: computed with {key} {known[key]}, the extractor here "
                            f"has {ours}: features of other networks are not comparable")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    of = f": {known['described']}" if "described" in known else \
        (f", {known['count']} images" if "count" in known else "")
    return Reference(mu, sigma, known.get("count"), f"{path} (sha256 {digest}){of}",
                     pixel_variance=known.get("pixel_variance"), extractor=known.get("extractor"),
                     weights_sha256=known.get("weights_sha256"))
