import gzip
import os
import pickle

import numpy as np
import pytest
from conftest import make_idx_dataset, write_idx

from latentatlas.data import load_split, parse_data_address, source_names
from latentatlas.data.idx import read_idx
from latentatlas.errors import UserError


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip_plain_and_gzip(tmp_path, gz):
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    path = write_idx(tmp_path / "x-images-idx3-ubyte", images, gz)
    np.testing.assert_array_equal(read_idx(path), images)


def test_idx_bad_magic_truncated_and_size_mismatch(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(UserError, match=r"bad: not an IDX file \(bad magic number 01020801\)"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x03\x00\x00")
    with pytest.raises(UserError, match="short: IDX header declares 3 dimensions but is trunc"):
        read_idx(short)
    path = write_idx(tmp_path / "img", np.zeros((2, 3, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(UserError, match=r"img: header says \(2, 3, 3\) \(18 bytes of data\) but "
                                        r"the file holds 17"):
        read_idx(path)
    corrupt = tmp_path / "c.gz"
    corrupt.write_bytes(gzip.compress(b"\x00" * 20)[:-6])
    with pytest.raises(UserError, match="corrupt gzip"):
        read_idx(corrupt)


def test_fashion_mnist_source_reads_a_folder_and_checks_counts(tmp_path):
    folder = make_idx_dataset(tmp_path / "f", n_train=20, n_test=10)
    split = load_split("fashion-mnist", "train", folder)
    assert split.images.shape == (20, 1, 28, 28) and split.images.dtype == np.uint8
    assert split.labels.shape == (20,) and split.labels.dtype == np.int64
    assert len(load_split("mnist", "test", folder, limit=4)) == 4
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(9, np.uint8), gz=True)
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz: 9 labels for 10 images"):
        load_split("fashion-mnist", "test", folder)


def test_missing_files_and_unknown_names_fail_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTATLAS_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="nowhere: Fashion-MNIST not found"):
        load_split("fashion-mnist", "train")
    with pytest.raises(UserError, match="needs the folder"):
        load_split("mnist", "train")
    with pytest.raises(UserError, match="unknown dataset 'imagenet'"):
        load_split("imagenet", "train")
    with pytest.raises(UserError, match="has no split 'valid'"):
        load_split("digits", "valid")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"train-images-idx3-ubyte\[\.gz\]: IDX file not found"):
        load_split("mnist", "train", tmp_path / "empty")


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist_is_the_real_thing(monkeypatch):
    monkeypatch.delenv("LATENTATLAS_FASHION_MNIST", raising=False)
    test = load_split("fashion-mnist", "test")
    assert test.images.shape == (10000, 1, 28, 28)
    assert np.bincount(test.labels).tolist() == [1000] * 10


def test_digits_splits():
    train, test = load_split("digits", "train"), load_split("digits", "test")
    assert train.images.shape == (1500, 1, 8, 8) and len(test) == 297
    assert train.images.max() == 255 and set(np.unique(train.labels)) == set(range(10))
    assert parse_data_address("digits") == ("digits", "test")
    assert parse_data_address("celeba:valid") == ("celeba", "valid")
    assert {"fashion-mnist", "mnist", "celeba", "cifar10", "digits"} <= set(source_names())


def write_cifar(folder, rng, names=("data_batch_1", "data_batch_2", "data_batch_3",
                                    "data_batch_4", "data_batch_5", "test_batch"), n=6):
    folder.mkdir(exist_ok=True)
    batches = {}
    for i, name in enumerate(names):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        batches[name] = (data, labels)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f, protocol=2 + i % 4)
    return batches


def test_cifar10_batches_load_in_order(tmp_path):
    batches = write_cifar(tmp_path / "c", np.random.default_rng(0))
    train = load_split("cifar10", "train", tmp_path / "c")
    assert train.images.shape == (30, 3, 32, 32)
    first = batches["data_batch_1"][0][0].reshape(3, 32, 32)
    np.testing.assert_array_equal(train.images[0], first)
    assert train.labels[6:12].tolist() == batches["data_batch_2"][1]
    assert len(load_split("cifar10", "test", tmp_path / "c", limit=4)) == 4


def test_cifar10_refuses_code_in_pickles_and_bad_shapes(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(UserError, match="refusing to load global"):
        load_split("cifar10", "test", folder)
    (folder / "test_batch").write_bytes(pickle.dumps(
        {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(UserError, match=r"must be uint8 \(N, 3072\), got uint8 \(2, 100\)"):
        load_split("cifar10", "test", folder)


def write_celeba(folder, sizes=((178, 218),) * 4, partition=(0, 0, 1, 2), kaggle=False):
    """A CelebA folder in the original layout, or in Kaggle's (the image folder nested in
    itself, the lists as .csv with a header row)."""
    from PIL import Image

    images = folder / "img_align_celeba" / ("img_align_celeba" if kaggle else "")
    images.mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(sizes))]
    for i, (name, (w, h)) in enumerate(zip(names, sizes, strict=True)):
        img = np.zeros((h, w, 3), np.uint8)
        img[45:173, 25:153] = (10 * i % 256, 100, 200)  # the face crop: a flat colour
        Image.fromarray(img).save(images / name, format="PNG")
    values = [(1 if i % 2 else -1, -1 if i % 2 else 1) for i in range(len(names))]
    if kaggle:
        (folder / "list_eval_partition.csv").write_text("image_id,partition\n" + "".join(
            f"{n},{p}\n" for n, p in zip(names, partition, strict=True)))
        (folder / "list_attr_celeba.csv").write_text("image_id,Wearing_Hat,Smiling\n" + "".join(
            f"{n},{a},{b}\n" for n, (a, b) in zip(names, values, strict=True)))
        return names
    (folder / "list_eval_partition.txt").write_text(
        "".join(f"{n} {p}\n" for n, p in zip(names, partition, strict=True)))
    rows = "".join(f"{n}  {a} {b}\n" for n, (a, b) in zip(names, values, strict=True))
    (folder / "list_attr_celeba.txt").write_text(f"{len(names)}\nWearing_Hat Smiling\n{rows}")
    return names


@pytest.mark.parametrize("kaggle", [False, True], ids=["original", "kaggle"])
def test_celeba_crop_resize_partition_and_attributes(tmp_path, kaggle):
    write_celeba(tmp_path, kaggle=kaggle)
    train = load_split("celeba", "train", tmp_path)
    assert train.images.shape == (2, 3, 64, 64)
    # The crop is exactly rows 45:173 and columns 25:153: nothing from the black border.
    np.testing.assert_array_equal(train.images[1, :, :, :], np.broadcast_to(
        np.array([10, 100, 200], np.uint8)[:, None, None], (3, 64, 64)))
    assert train.attrs["Wearing_Hat"].tolist() == [0, 1]
    assert train.attrs["Smiling"].tolist() == [1, 0]
    assert len(load_split("celeba", "valid", tmp_path)) == 1
    assert load_split("celeba", "test", tmp_path).attrs["Wearing_Hat"].tolist() == [1]


def test_celeba_rejects_small_images_and_bad_lists(tmp_path):
    write_celeba(tmp_path / "a", sizes=((178, 218), (100, 100), (178, 218), (178, 218)))
    with pytest.raises(UserError, match=r"000002.jpg: image is 100x100"):
        load_split("celeba", "train", tmp_path / "a")
    write_celeba(tmp_path / "b")
    (tmp_path / "b" / "list_eval_partition.txt").write_text("000001.jpg 7\n")
    with pytest.raises(UserError, match=r"list_eval_partition.txt:1: expected"):
        load_split("celeba", "train", tmp_path / "b")
