"""What `latentatlas fid` reads besides models and datasets: images a user brings (a folder of
PNG / JPEG files, a .npy / .npz array, in every layout) and reference statistics in
pytorch-fid's .npz format (mu, sigma), checked as read. The verb's round trips (saved
statistics give the in-memory FID back; folder and array inputs give the model path's FID)
run in test_quality's verb test, on a trained VAE."""

import numpy as np
import pytest
from PIL import Image

from latentatlas import fid_stats, frechet
from latentatlas.data.image_files import read_images
from latentatlas.errors import UserError
from latentatlas.features import Extractor


def random_images(n=5, c=3, h=6, w=7, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, c, h, w), dtype=np.uint8)


def write_folder(folder, images, suffix=".png"):
    folder.mkdir()
    for i, img in enumerate(images):  # file-name order is row order
        pixels = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        Image.fromarray(pixels).save(folder / f"{i:03d}{suffix}")
    return folder


@pytest.mark.parametrize("channels", [1, 3])
def test_a_png_folder_and_arrays_in_every_layout_read_back_the_same_images(tmp_path, channels):
    images = random_images(c=channels)
    assert np.array_equal(read_images(write_folder(tmp_path / "png", images)), images)
    layouts = {"nchw": images, "nhwc": images.transpose(0, 2, 3, 1)}
    if channels == 1:
        layouts["nhw"] = images[:, 0]
    for name, array in layouts.items():
        np.save(tmp_path / f"{name}.npy", array)
        assert np.array_equal(read_images(tmp_path / f"{name}.npy"), images), name
    # floats in [0, 1] are rounded to the 8 bits a saved image holds
    np.savez(tmp_path / "floats.npz", images=images / 255.0, labels=np.arange(5))
    assert np.array_equal(read_images(tmp_path / "floats.npz"), images)
    np.savez(tmp_path / "one.npz", images.astype(np.int64))
    assert np.array_equal(read_images(tmp_path / "one.npz"), images)
    alpha = np.full((5, 6, 7, 1), 9, np.uint8)
    if channels == 3:  # an alpha channel is dropped, from an array as from a file
        np.save(tmp_path / "rgba.npy", np.concatenate([layouts["nhwc"], alpha], axis=3))
        assert np.array_equal(read_images(tmp_path / "rgba.npy"), images)
    else:  # a palette PNG of grays reads as gray
        folder = tmp_path / "palette"
        folder.mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img[0]).convert("P").save(folder / f"{i}.png")
        assert np.array_equal(read_images(folder), images)


def test_jpeg_files_read_as_rgb_and_alpha_is_dropped(tmp_path):
    images = random_images(n=2)
    folder = tmp_path / "jpg"
    folder.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img.transpose(1, 2, 0)).save(folder / f"{i}.jpg", quality=95)
    rgba = np.concatenate([images[0].transpose(1, 2, 0), np.full((6, 7, 1), 7, np.uint8)], 2)
    Image.fromarray(rgba, "RGBA").save(folder / "2.png")
    got = read_images(folder)
    assert got.shape == (3, 3, 6, 7) and got.dtype == np.uint8
    assert np.array_equal(got[2], images[0])  # PNG is lossless; only alpha went
    for i in range(2):  # JPEG is lossy: the pixels are what the decoder gives, in CHW
        with Image.open(folder / f"{i}.jpg") as img:
            assert np.array_equal(got[i], np.asarray(img).transpose(2, 0, 1))


def test_bad_image_inputs_are_named_in_one_line(tmp_path):
    folder = write_folder(tmp_path / "mixed", random_images(n=2))
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(folder / "002.png")
    with pytest.raises(UserError, match=r"002.png: RGB 8x6, the first file \(000.png\) is RGB "
                                        r"7x6"):
        read_images(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .png, .jpg, .jpeg files"):
        read_images(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="a.png: not a readable image"):
        read_images(tmp_path / "broken")
    with pytest.raises(UserError, match="no such file or folder"):
        read_images(tmp_path / "nope")
    cases = {
        "range.npy": (np.full((2, 4, 4), 1.5), r"floats in \[1.5, 1.5\]; images as floats are in "
                                                r"\[0, 1\]"),
        "nan.npy": (np.full((2, 4, 4), np.nan), "holds NaN or inf"),
        "shape.npy": (np.zeros((2, 5, 4, 6), np.uint8), r"shape \(2, 5, 4, 6\)"),
        "big.npy": (np.full((2, 4, 4), 300), "int64 values"),
    }
    for name, (array, message) in cases.items():
        np.save(tmp_path / name, array)
        with pytest.raises(UserError, match=message):
            read_images(tmp_path / name)
    more = {
        "empty.npy": (np.zeros((0, 4, 4), np.float32), r"no images \(shape \(0, 1, 4, 4\)\)"),
        "ambiguous.npy": (np.zeros((2, 3, 5, 3), np.uint8), r"reads as \(N, C, H, W\) or as "
                                                            r"\(N, H, W, C\)"),
        "one_image.npy": (np.zeros((32, 32, 3), np.uint8), "reads as one H x W x C image"),
        "binary.npy": (np.ones((2, 4, 4), np.uint8), r"integers in 1..1; 8-bit images are "
                                                     r"0..255 \(binary images"),
    }
    for name, (array, message) in more.items():
        np.save(tmp_path / name, array)
        with pytest.raises(UserError, match=message):
            read_images(tmp_path / name)
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 4, 4)), b=np.zeros((2, 4, 4)))
    with pytest.raises(UserError, match="arrays a, b; name the images 'images'"):
        read_images(tmp_path / "two.npz")
    (tmp_path / "fake.npy").write_bytes(b"nonsense")
    with pytest.raises(UserError, match="fake.npy: not a numpy array file"):
        read_images(tmp_path / "fake.npy")


def extractor(features=4, name="classifier-x-v1", digest="ab" * 32):
    return Extractor(name, "models:/classifier-x/1", {}, digest, features, "none")


def test_reference_statistics_round_trip_through_pytorch_fids_format(tmp_path):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 4)) @ rng.normal(size=(4, 4))
    fake = rng.normal(size=(200, 4)) + 0.3
    ext = extractor()
    ref = frechet.Reference.of(real, "x:test, 300 images", pixel_variance=0.05,
                               extractor=ext.name, weights_sha256=ext.digest)
    path = fid_stats.write_reference(ref, tmp_path / "ref.npz")
    with np.load(path) as f:  # what pytorch-fid reads: mu and sigma, float64
        assert f["mu"].shape == (4,) and f["sigma"].shape == (4, 4)
        assert f["sigma"].dtype == np.float64 and int(f["count"]) == 300
    back = fid_stats.read_reference(path, ext)
    assert np.array_equal(back.mu, ref.mu) and np.array_equal(back.sigma, ref.sigma)
    assert back.count == 300 and back.pixel_variance == 0.05 and back.features is None
    assert "ref.npz (sha256 " in back.described and back.described.endswith(
        ": x:test, 300 images")

    # pytorch-fid's own file: compressed, mu and sigma alone, mu in float32
    np.savez_compressed(tmp_path / "published.npz", mu=ref.mu.astype(np.float32),
                        sigma=ref.sigma)
    published = fid_stats.read_reference(tmp_path / "published.npz", ext)
    assert published.count is None and published.pixel_variance is None
    assert frechet.compare(published, fake)["fid"] == pytest.approx(
        frechet.compare(ref, fake)["fid"], rel=1e-5)  # mu rounded to float32: 1e-7 of it


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary_one(tmp_path, monkeypatch):
    ref = frechet.Reference(np.zeros(2), np.eye(2), 10, "x")
    target = tmp_path / "ref.npz"
    target.write_bytes(b"what was there")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    with pytest.raises(UserError, match="--save-ref-stats .*ref.npz: could not be written: no "
                                        "space left on its disk \\(it needs about "):
        fid_stats.write_reference(ref, target)
    assert target.read_bytes() == b"what was there"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.npz"]
    monkeypatch.undo()
    with pytest.raises(UserError, match="a folder; give a file name"):
        fid_stats.check_writable(tmp_path)
    with pytest.raises(UserError, match="no such folder"):
        fid_stats.check_writable(tmp_path / "nope" / "ref.npz")


def test_bad_reference_statistics_are_named_in_one_line(tmp_path):
    ext = extractor()
    mu, sigma = np.zeros(4), np.eye(4)
    asymmetric = np.eye(4)
    asymmetric[0, 1] = 0.5
    cases = {
        "no_sigma.npz": ({"mu": mu}, "no 'sigma' array"),
        "width.npz": ({"mu": np.zeros(3), "sigma": np.eye(3)},
                      r"mu \(3,\) and sigma \(3, 3\); classifier-x-v1 has 4 features, so "
                      r"\(4,\) and \(4, 4\)"),
        "nan.npz": ({"mu": np.full(4, np.nan), "sigma": sigma}, "mu or sigma holds NaN"),
        "asym.npz": ({"mu": mu, "sigma": asymmetric}, "sigma is not symmetric"),
        "other.npz": ({"mu": mu, "sigma": sigma, "extractor": "inception"},
                      "computed with extractor inception, the extractor here has "
                      "classifier-x-v1"),
        "weights.npz": ({"mu": mu, "sigma": sigma, "weights_sha256": "cd" * 32},
                        "computed with weights_sha256 cdcd"),
        "indefinite.npz": ({"mu": mu, "sigma": -sigma},
                           "sigma has eigenvalue -1 < 0, so not a covariance"),
        "count.npz": ({"mu": mu, "sigma": sigma, "count": np.arange(3)},
                      "key 'count' is int64 \\(3,\\)"),
        "count_text.npz": ({"mu": mu, "sigma": sigma, "count": "many"},
                           "key 'count' is <U4 \\(\\)"),
        "variance.npz": ({"mu": mu, "sigma": sigma, "pixel_variance": np.nan},
                         "key 'pixel_variance' is float64 \\(\\) .*not a number in "
                         "\\[0, 0.25\\]"),
    }
    for name, (arrays, message) in cases.items():
        np.savez(tmp_path / name, **arrays)
        with pytest.raises(UserError, match=f"^--ref-stats {tmp_path / name}: {message}"):
            fid_stats.read_reference(tmp_path / name, ext)
    (tmp_path / "text.npz").write_text("mu sigma")
    with pytest.raises(UserError, match="not a .npz of arrays"):
        fid_stats.read_reference(tmp_path / "text.npz", ext)
    with pytest.raises(UserError, match="file not found"):
        fid_stats.read_reference(tmp_path / "nope.npz", ext)


def test_frechet_distance_is_symmetric_zero_for_equal_gaussians_and_its_closed_forms():
    rng = np.random.default_rng(1)
    a = frechet.Reference.of(rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5)))
    b = frechet.Reference.of(rng.normal(size=(400, 5)) * 2 + 1)
    ab = frechet.frechet_distance(a, b.mu, b.sigma)
    assert ab > 1
    assert ab == pytest.approx(frechet.frechet_distance(b, a.mu, a.sigma), rel=1e-9)
    assert frechet.frechet_distance(a, a.mu, a.sigma) == pytest.approx(0, abs=1e-9)
    # equal covariances: the distance is the squared distance of the means, exactly
    assert frechet.frechet_distance(a, a.mu + 2, a.sigma) == pytest.approx(4 * 5, rel=1e-9)
    # one dimension: (m1 - m2)^2 + (s1 - s2)^2
    one = frechet.Reference(np.array([0.0]), np.array([[4.0]]), None, "")
    assert frechet.frechet_distance(one, np.array([1.0]), np.array([[9.0]])) == \
        pytest.approx(1 + 1, rel=1e-12)


def test_the_verbs_contradictory_or_incomplete_inputs_are_one_line(workdir, capsys):
    from jobs import fid as fid_verb

    write_folder(workdir / "imgs", random_images(n=3, c=1, h=28, w=28))
    np.savez(workdir / "ref.npz", mu=np.zeros(4), sigma=np.eye(4))
    store = ["--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"]
    cases = [
        ([], "error: give --model URI or --images PATH to score"),
        (["--images", "imgs", "--ref-stats", "ref.npz", "--save-ref-stats", "out.npz"],
         "error: --save-ref-stats: the real side is --ref-stats' file already"),
        (["--images", "imgs", "--second-stage", "runs:/x/model"],
         "error: --second-stage: samples a model; --images are images"),
        (["--images", "imgs", "--ref-stats", "ref.npz"],
         "error: --ref-stats ref.npz: name the feature space of the statistics with "
         "--extractor"),
        (["--images", "imgs", "--extractor", "inception", "--extractor", "classifier-x",
          "--save-ref-stats", "out.npz"],
         "error: --save-ref-stats out.npz: a statistics file is of one feature space"),
        (["--images", "imgs", "--save-ref-stats", "nope/out.npz"],
         "error: --save-ref-stats nope/out.npz: no such folder nope"),
    ]
    for argv, message in cases:
        assert fid_verb.main([*argv, *store]) == 2, argv
        err = capsys.readouterr().err.splitlines()
        # one line; the note on Ray's log follows it where this test process started Ray
        assert err[0].startswith(message), (argv, err)
        assert all(line.startswith("Ray's own messages: ") for line in err[1:]), (argv, err)
    assert not (workdir / "out.npz").exists()
