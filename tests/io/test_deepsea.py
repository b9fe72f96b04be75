"""The DeepSEA-format reader and writer: layouts, containers, and rejected inputs."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from danq.config import SPLITS
from danq.data.encoding import codes_to_onehot, encode
from danq.errors import DataError
from danq.io.deepsea import (
    SplitWriter,
    open_prediction_input,
    open_split,
    summarise_folder,
    write_split,
)


def random_split(n: int = 30, seq_len: int = 40, n_targets: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = codes_to_onehot(rng.integers(0, 5, size=(n, seq_len)).astype(np.uint8))
    y = (rng.random((n, n_targets)) < 0.3).astype(np.uint8)
    return x, y


def read_all(path: Path, chunk: int = 7, **kwargs):
    with open_split(path, **kwargs) as reader:
        parts = list(reader.iter_chunks(chunk))
    return np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


@pytest.mark.parametrize("split", ["train", "valid", "test"])
def test_round_trip_in_the_bundle_layout(tmp_path: Path, split: str) -> None:
    x, y = random_split()
    path = write_split(tmp_path / f"{split}.mat", split, x, y)
    x_back, y_back = read_all(path)
    np.testing.assert_array_equal(x_back, x)
    np.testing.assert_array_equal(y_back, y)
    with open_split(path) as reader:
        assert (reader.n, reader.seq_len, reader.n_targets) == (30, 40, 5)
        assert reader.container == ("hdf5" if split == "train" else "mat5")


def test_train_mat_is_matlab_v73_with_samples_on_the_last_axis(tmp_path: Path) -> None:
    x, y = random_split()
    path = write_split(tmp_path / "train.mat", "train", x, y)
    assert path.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    with h5py.File(path) as f:
        assert f["trainxdata"].shape == (40, 4, 30) and f["traindata"].shape == (5, 30)
        assert f["trainxdata"].dtype == np.uint8
        assert f["trainxdata"].attrs["MATLAB_class"] == b"uint8"
        # Sample 3 is the slice [:, :, 3], positions by channels.
        np.testing.assert_array_equal(f["trainxdata"][:, :, 3], x[3])


def test_v5_files_load_in_scipy_with_samples_first(tmp_path: Path) -> None:
    x, y = random_split()
    write_split(tmp_path / "valid.mat", "valid", x, y)
    loaded = scipy.io.loadmat(tmp_path / "valid.mat")
    assert loaded["validxdata"].shape == (30, 4, 40)
    np.testing.assert_array_equal(loaded["validxdata"], x.transpose(0, 2, 1))
    np.testing.assert_array_equal(loaded["validdata"], y)


@pytest.mark.parametrize("compressed", [False, True])
def test_reads_files_written_by_scipy(tmp_path: Path, compressed: bool) -> None:
    x, y = random_split(n=25)
    scipy.io.savemat(
        tmp_path / "test.mat",
        {"testxdata": x.transpose(0, 2, 1), "testdata": y, "note": np.arange(3.0)},
        do_compression=compressed,
    )
    x_back, y_back = read_all(tmp_path / "test.mat", chunk=10)
    np.testing.assert_array_equal(x_back, x)
    np.testing.assert_array_equal(y_back, y)


def test_v73_valid_file_with_samples_first(tmp_path: Path) -> None:
    x, y = random_split()
    write_split(tmp_path / "valid.mat", "valid", x, y, container="hdf5")
    with h5py.File(tmp_path / "valid.mat") as f:
        assert f["validxdata"].shape == (30, 4, 40)
    x_back, y_back = read_all(tmp_path / "valid.mat")
    np.testing.assert_array_equal(x_back, x)


def test_prediction_layout_without_labels(tmp_path: Path) -> None:
    x = codes_to_onehot(np.stack([encode("AGCTN" * 8), encode("TTTTT" * 8)]))
    with h5py.File(tmp_path / "predict.h5", "w") as f:
        f["testxdata"] = x.transpose(0, 2, 1)
    with open_prediction_input(tmp_path / "predict.h5") as reader:
        assert not reader.has_labels and reader.n == 2
        got, labels = reader.read(0, 2)
    assert labels is None
    np.testing.assert_array_equal(got, x)


def test_any_number_of_targets(tmp_path: Path) -> None:
    x, y = random_split(n_targets=919)
    write_split(tmp_path / "test.mat", "test", x, y)
    _, y_back = read_all(tmp_path / "test.mat")
    assert y_back.shape == (30, 919)


def test_writer_leaves_nothing_when_it_fails(tmp_path: Path) -> None:
    x, y = random_split()
    with pytest.raises(RuntimeError):
        with SplitWriter(tmp_path / "train.mat", "train", 30, 40, 5) as writer:
            writer.write(0, x[:10], y[:10])
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_long_sequences_are_written_in_chunks_of_at_most_4_mib(tmp_path: Path) -> None:
    """HDF5 inflates a whole chunk to read any of it; the writer keeps chunks small whatever
    the sequence length (the reader refuses chunks past limits.max_chunk_bytes)."""
    x, y = random_split(n=300, seq_len=5000)
    path = write_split(tmp_path / "train.mat", "train", x, y)
    with h5py.File(path) as f:
        assert f["trainxdata"].chunks == (5000, 4, 209)  # 4,180,000 bytes
    x_back, _ = read_all(path, chunk=128)
    np.testing.assert_array_equal(x_back, x)


def test_byte_identical_output(tmp_path: Path) -> None:
    x, y = random_split()
    for split in ("train", "test"):
        a = write_split(tmp_path / "a" / f"{split}.mat", split, x, y).read_bytes()
        b = write_split(tmp_path / "b" / f"{split}.mat", split, x, y).read_bytes()
        assert a == b


# --------------------------------------------------------------------------- rejected inputs


def h5_train(path: Path, x, y, x_key="trainxdata", y_key="traindata") -> Path:
    with h5py.File(path, "w") as f:
        if x is not None:
            f[x_key] = x
        if y is not None:
            f[y_key] = y
    return path


def expect_error(path: Path, *words: str, read: bool = False, **kwargs) -> str:
    with pytest.raises(DataError) as err:
        with open_split(path, **kwargs) as reader:
            if read:
                reader.read(0, reader.n)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def test_missing_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "train.mat", "train.mat", "not found")


def test_not_a_matlab_file(tmp_path: Path) -> None:
    (tmp_path / "valid.mat").write_text("chr1\t100\t200\n")
    expect_error(tmp_path / "valid.mat", "valid.mat", "not an HDF5")


def test_missing_key(tmp_path: Path) -> None:
    x, _ = random_split()
    h5_train(tmp_path / "train.mat", x.transpose(1, 2, 0), None)
    expect_error(tmp_path / "train.mat", "train.mat", "missing key 'traindata'", "trainxdata")


def test_wrong_rank(tmp_path: Path) -> None:
    x, y = random_split()
    h5_train(tmp_path / "train.mat", x.reshape(30, -1).T, y.T)
    expect_error(tmp_path / "train.mat", "trainxdata", "rank 2")


def test_wrong_channel_axis(tmp_path: Path) -> None:
    x, y = random_split()
    h5_train(tmp_path / "train.mat", x.transpose(2, 1, 0), y.T)  # (4, L, N)
    expect_error(tmp_path / "train.mat", "trainxdata", "axis 1 has size 40", "transposed")


def test_unexpected_sequence_length(tmp_path: Path) -> None:
    x, y = random_split()
    h5_train(tmp_path / "train.mat", x.transpose(1, 2, 0), y.T)
    expect_error(tmp_path / "train.mat", "sequences are 40 bp", "expected 1000", seq_len=1000)


def test_sample_counts_disagree(tmp_path: Path) -> None:
    x, y = random_split()
    h5_train(tmp_path / "train.mat", x.transpose(1, 2, 0), y[:20].T)
    expect_error(tmp_path / "train.mat", "trainxdata has 30 samples", "traindata has 20")


def test_float_array_is_rejected(tmp_path: Path) -> None:
    x, y = random_split()
    scipy.io.savemat(
        tmp_path / "valid.mat", {"validxdata": x.transpose(0, 2, 1).astype(float), "validdata": y}
    )
    expect_error(tmp_path / "valid.mat", "validxdata", "float64", "uint8")


def test_non_binary_labels(tmp_path: Path) -> None:
    x, y = random_split()
    y[4, 2] = 2
    write_split(tmp_path / "test.mat", "test", x, y)
    expect_error(tmp_path / "test.mat", "testdata", "value 2 at sample 4", read=True)


def test_two_bases_at_one_position(tmp_path: Path) -> None:
    x, y = random_split()
    x[17, 5] = [1, 1, 0, 0]
    write_split(tmp_path / "test.mat", "test", x, y)
    expect_error(
        tmp_path / "test.mat",
        "testxdata",
        "two or more bases",
        "first: sample 17, position 5",
        read=True,
    )


def test_truncated_hdf5(tmp_path: Path) -> None:
    x, y = random_split(n=300, seq_len=200)
    data = write_split(tmp_path / "train.mat", "train", x, y).read_bytes()
    (tmp_path / "train.mat").write_bytes(data[: len(data) // 2])
    expect_error(tmp_path / "train.mat", "train.mat", "truncated", read=True)


def test_truncated_v5(tmp_path: Path) -> None:
    x, y = random_split()
    data = write_split(tmp_path / "test.mat", "test", x, y).read_bytes()
    (tmp_path / "test.mat").write_bytes(data[: len(data) - 100])
    expect_error(tmp_path / "test.mat", "test.mat", "truncated")


def test_split_name_must_be_known(tmp_path: Path) -> None:
    x, y = random_split()
    write_split(tmp_path / "mydata.mat", "train", x, y)
    expect_error(tmp_path / "mydata.mat", "cannot tell the split")
    x_back, _ = read_all(tmp_path / "mydata.mat", split="train")
    np.testing.assert_array_equal(x_back, x)


# --------------------------------------------------------------------------- folder summary


def test_summarise_folder_matches_the_arrays(tmp_path: Path) -> None:
    splits = {split: random_split(n=20 + 10 * i, seed=i) for i, split in enumerate(SPLITS)}
    for split, (x, y) in splits.items():
        write_split(tmp_path / f"{split}.mat", split, x, y)
    summary = summarise_folder(tmp_path, chunk_size=7)
    assert list(summary) == list(SPLITS)
    x, y = splits["valid"]
    bases = x.sum(axis=(1, 2))
    assert summary["valid"] == {
        "file": "valid.mat",
        "container": "MATLAB v5",
        "layout": "sample_first",
        "samples": 30,
        "seq_len": 40,
        "targets": 5,
        "gc_content": round(x[:, :, 1:3].sum() / bases.sum(), 4),
        "mean_prevalence": round(float(y.mean()), 4),
        "targets_without_positives": int((y.sum(axis=0) == 0).sum()),
    }
    assert summary["train"]["container"] == "MATLAB v7.3 (HDF5)"
    assert summary["train"]["layout"] == "sample_last"
