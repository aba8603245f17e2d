"""CIFAR-10 loading, augmentation and batching, on tiny archives in the official format."""
from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from adaptive.spatial import cifar

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck"]


def official_batch(n: int, seed: int, name: str) -> dict:
    """A batch dict as in the official archive: byte-string keys, a (n, 3072) uint8 array."""
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": name.encode(),
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)],
    }


def official_members(n: int = 3) -> dict[str, dict]:
    members = {f"data_batch_{i}": official_batch(n, i, f"training batch {i} of 5")
               for i in range(1, 6)}
    members["test_batch"] = official_batch(n + 1, 99, "testing batch 1 of 1")
    members["batches.meta"] = {b"num_cases_per_batch": n, b"num_vis": 3072,
                               b"label_names": [c.encode() for c in CLASS_NAMES]}
    return members


class Python2StylePickler(pickle.Pickler):
    """Pickle uint8 arrays the way the official batches were written (Python 2, numpy 1).

    There the array's dtype arguments are byte strings and the reconstructor is named
    ``numpy.core.multiarray._reconstruct`` (numpy 2 writes ``numpy._core``; see ``dump``).
    """

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray) and obj.dtype == np.uint8:
            return (np._core.multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                    (1, obj.shape, obj.dtype, False, obj.tobytes()))
        if isinstance(obj, np.dtype) and obj == np.uint8:
            return (np.dtype, (b"u1", 0, 1), (3, b"|", None, None, None, -1, -1, 0))
        return NotImplemented


def dump(content: object) -> bytes:
    buffer = io.BytesIO()
    Python2StylePickler(buffer, protocol=2).dump(content)
    return buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def test_tiny_batches_are_pickled_like_the_official_ones():
    raw = dump(official_batch(2, 0, "x"))
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"numpy._core" not in raw


def write_archive(directory: Path, members: dict[str, object]) -> Path:
    """cifar-10-python.tar.gz holding cifar-10-batches-py/<name> for each member (pickled)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / cifar.ARCHIVE_NAME
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo(cifar.FOLDER_NAME)
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
        for name, content in members.items():
            raw = content if isinstance(content, bytes) else dump(content)
            info = tarfile.TarInfo(f"{cifar.FOLDER_NAME}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny(tmp_path):
    members = official_members()
    path = write_archive(tmp_path / "cifar10", members)
    return path, members


def test_train_split_in_batch_order_and_pixel_layout(tiny):
    path, members = tiny
    images, labels = cifar.load_cifar10(path.parent, "train", expected_md5=md5(path))
    assert images.shape == (15, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == (15,) and labels.dtype == torch.int64
    expected = np.concatenate([members[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    assert torch.equal(labels, torch.tensor(sum((members[f"data_batch_{i}"][b"labels"]
                                                 for i in range(1, 6)), [])))
    # row layout: 1024 red, 1024 green, 1024 blue values, each 32x32 row-major
    c, r, col = 2, 5, 7
    assert images[4, c, r, col].item() == expected[4, c * 1024 + r * 32 + col]
    assert torch.equal(images.reshape(15, -1), torch.from_numpy(expected))


def test_test_split_and_class_names(tiny):
    path, members = tiny
    images, labels = cifar.load_cifar10(path.parent, "test", expected_md5=md5(path))
    assert images.shape == (4, 3, 32, 32)
    assert labels.tolist() == members["test_batch"][b"labels"]
    assert cifar.load_class_names(path.parent, expected_md5=None) == CLASS_NAMES


def test_extracted_folder_gives_the_same_data(tiny, tmp_path):
    path, _ = tiny
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "extracted", filter="data")
    from_folder = cifar.load_cifar10(tmp_path / "extracted", "train")
    from_archive = cifar.load_cifar10(path.parent, "train", expected_md5=None)
    assert all(torch.equal(a, b) for a, b in zip(from_folder, from_archive))


def test_wrong_md5_names_expected_and_got(tiny):
    path, _ = tiny
    with pytest.raises(ValueError, match="md5 mismatch") as error:
        cifar.load_cifar10(path.parent)                       # the official md5
    assert cifar.OFFICIAL_MD5 in str(error.value) and md5(path) in str(error.value)
    assert "curl -L -o" in str(error.value)


def test_truncated_archive(tiny):
    path, _ = tiny
    full_md5 = md5(path)
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        cifar.load_cifar10(path.parent, expected_md5=None)
    with pytest.raises(ValueError, match="md5 mismatch"):
        cifar.load_cifar10(path.parent, expected_md5=full_md5)


def test_missing_member(tmp_path):
    members = official_members()
    del members["data_batch_3"]
    path = write_archive(tmp_path, members)
    with pytest.raises(ValueError, match="lacks the member.*cifar-10-batches-py/data_batch_3"):
        cifar.load_cifar10(tmp_path, expected_md5=md5(path))
    assert cifar.load_cifar10(tmp_path, "test", expected_md5=None)[0].shape[0] == 4


def test_wrong_shape_and_missing_key(tmp_path):
    members = official_members()
    members["data_batch_2"][b"data"] = np.zeros((3, 3000), dtype=np.uint8)
    write_archive(tmp_path / "shape", members)
    with pytest.raises(ValueError, match=r"data_batch_2.*shape \(n, 3072\).*\(3, 3000\)"):
        cifar.load_cifar10(tmp_path / "shape", expected_md5=None)
    members = official_members()
    del members["test_batch"][b"labels"]
    write_archive(tmp_path / "key", members)
    with pytest.raises(ValueError, match="test_batch lacks the key b'labels'"):
        cifar.load_cifar10(tmp_path / "key", "test", expected_md5=None)


def test_labels_must_match_rows(tmp_path):
    members = official_members()
    members["data_batch_1"][b"labels"] = [0, 1]
    write_archive(tmp_path, members)
    with pytest.raises(ValueError, match="must hold 3 integers"):
        cifar.load_cifar10(tmp_path, expected_md5=None)


def test_pickle_with_foreign_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("should never run",))

    members = official_members()
    members["test_batch"] = pickle.dumps(Evil(), protocol=2)
    write_archive(tmp_path, members)
    with pytest.raises(ValueError, match=r"refusing to load (__builtin__|builtins)\.print"):
        cifar.load_cifar10(tmp_path, "test", expected_md5=None)


def test_missing_directory_says_what_was_looked_for(tmp_path):
    where = tmp_path / "nowhere"
    with pytest.raises(ValueError) as error:
        cifar.load_cifar10(where)
    message = str(error.value)
    assert f"data_dir={str(where)!r}" in message and "does not exist" in message
    assert cifar.ARCHIVE_NAME in message and cifar.FOLDER_NAME in message
    assert f"curl -L -o {where / cifar.ARCHIVE_NAME} {cifar.OFFICIAL_URL}" in message


def test_bad_split_and_bad_md5_argument(tiny):
    path, _ = tiny
    with pytest.raises(ValueError, match="split must be one of 'train', 'test'"):
        cifar.load_cifar10(path.parent, "validation")
    with pytest.raises(ValueError, match="expected_md5 must be a 32-character"):
        cifar.load_cifar10(path.parent, expected_md5="abc")


# ----------------------------------------------------------------------------- augmentation


def shifted(image: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    """Reference: zero-pad by 4, take the window at offset (dy, dx) in 0..8, then flip."""
    window = torch.nn.functional.pad(image, (4, 4, 4, 4))[:, dy:dy + 32, dx:dx + 32]
    return window.flip(-1) if flip else window


def test_augment_keeps_shape_and_is_reproducible():
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    out = cifar.augment(images, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert torch.equal(out, cifar.augment(images, torch.Generator().manual_seed(1)))
    assert not torch.equal(out, cifar.augment(images, torch.Generator().manual_seed(2)))


def test_augment_is_a_padded_crop_possibly_flipped():
    image = torch.arange(3 * 32 * 32, dtype=torch.float32).reshape(3, 32, 32) + 1  # all distinct
    out = cifar.augment(image.expand(64, 3, 32, 32), torch.Generator().manual_seed(0))
    seen = set()
    for picture in out:
        matches = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                   if torch.equal(picture, shifted(image, dy, dx, f))]
        assert len(matches) == 1                      # exactly one crop/flip explains it
        seen.add(matches[0])
    assert len(seen) > 30                             # the content really moves
    assert {f for _, _, f in seen} == {False, True}
    assert any(dy != 4 or dx != 4 for dy, dx, _ in seen)


def test_augment_flips_about_half_the_time():
    left_bright = torch.zeros(4000, 1, 2, 4)
    left_bright[..., :2] = 1
    left_bright = left_bright.expand(4000, 3, 2, 4)
    out = cifar.augment(left_bright, torch.Generator().manual_seed(3), padding=0)
    flipped = out[:, 0, 0, 0] == 0
    assert torch.equal(out[~flipped], left_bright[~flipped])
    assert 0.45 < flipped.float().mean().item() < 0.55
    assert torch.equal(cifar.augment(left_bright, torch.Generator(), padding=0, flip=False),
                       left_bright)


def test_augment_rejects_bad_input():
    with pytest.raises(ValueError, match=r"images must be a tensor of shape \(N, 3, H, W\)"):
        cifar.augment(torch.zeros(3, 32, 32), torch.Generator())
    with pytest.raises(ValueError, match="padding must be an integer >= 0"):
        cifar.augment(torch.zeros(1, 3, 32, 32), torch.Generator(), padding=-1)


def test_normalize_and_channel_stats():
    images = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    out = cifar.normalize(images)
    assert out.dtype == torch.float32
    mean = torch.tensor(cifar.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cifar.CIFAR10_STD).view(1, 3, 1, 1)
    assert torch.allclose(out, (images / 255 - mean) / std)
    assert torch.allclose(cifar.normalize(images.float() / 255), out)
    m, s = cifar.channel_stats(images)
    x = images.double() / 255
    assert torch.allclose(m.double(), x.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(s.double(), x.std(dim=(0, 2, 3), unbiased=False), atol=1e-6)
    standardised = cifar.normalize(images, mean=m.tolist(), std=s.tolist())
    assert torch.allclose(standardised.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)


# ----------------------------------------------------------------------------- batching


def test_batches_cover_every_example_once_per_epoch_in_a_seeded_order():
    x = torch.arange(10).float().view(10, 1)
    y = torch.arange(10)
    batches = cifar.Batches(x, y, batch_size=4, seed=5)
    assert len(batches) == 3
    first = list(batches)                                   # epoch 0
    second = list(batches)                                  # epoch 1
    assert [len(b[1]) for b in first] == [4, 4, 2]
    assert sorted(torch.cat([b[1] for b in first]).tolist()) == list(range(10))
    assert all(torch.equal(bx.view(-1).long(), by) for bx, by in first)   # rows stay aligned
    order = lambda run: torch.cat([b[1] for b in run]).tolist()           # noqa: E731
    assert order(first) != order(second)
    again = cifar.Batches(x, y, batch_size=4, seed=5)
    assert order(again.epoch(1)) == order(second)           # resumable: depends on (seed, epoch)
    assert order(cifar.Batches(x, y, batch_size=4, seed=6).epoch(0)) != order(first)
    assert len(cifar.Batches(x, y, batch_size=4, drop_last=True)) == 2
    assert order(cifar.Batches(x, y, batch_size=4, shuffle=False).epoch(0)) == list(range(10))


def test_batches_transform_and_stream():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(6)
    batches = cifar.Batches(images, labels, batch_size=4, transform=cifar.augment_and_normalize)
    x, y = next(iter(batches))
    assert x.dtype == torch.float32 and x.shape == (4, 3, 32, 32) and y.shape == (4,)
    stream = batches.stream()
    assert sum(1 for _ in zip(range(7), stream)) == 7        # runs past one epoch (2 batches)
    with pytest.raises(ValueError, match="share their first dimension"):
        cifar.Batches(images, labels[:5], batch_size=2)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        cifar.Batches(images, labels, batch_size=0)


def test_folder_of_batches_written_by_numpy_2_also_loads(tmp_path):
    members = official_members()
    for name, content in members.items():
        (tmp_path / name).write_bytes(pickle.dumps(content))      # data_dir holds the files
    images, labels = cifar.load_cifar10(tmp_path, "test")
    assert torch.equal(images.reshape(4, -1), torch.from_numpy(members["test_batch"][b"data"]))
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(ValueError, match="data_batch_4 is missing"):
        cifar.load_cifar10(tmp_path, "train")
