"""MATLAB v5 files read and written in row ranges, checked against scipy.io."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from danq.errors import DataError
from danq.io import mat5


@pytest.mark.parametrize("compressed", [False, True])
def test_reads_any_row_range_of_scipy_arrays(tmp_path: Path, compressed: bool) -> None:
    rng = np.random.default_rng(1)
    arrays = {
        "cube": rng.integers(0, 255, size=(11, 4, 7)).astype(np.uint8),
        "table": rng.normal(size=(11, 3)),
        "counts": rng.integers(-5, 5, size=(11, 2)).astype(np.int32),
    }
    scipy.io.savemat(
        tmp_path / "a.mat", {**arrays, "words": "not numeric"}, do_compression=compressed
    )
    with open(tmp_path / "a.mat", "rb") as fh:
        assert mat5.is_mat5_header(fh.read(mat5.HEADER_SIZE))
        fh.seek(0)
        mat = mat5.Mat5File(fh, "a.mat")
        assert sorted(mat.vars) == ["counts", "cube", "table"]
        assert mat.vars["cube"].shape == (11, 4, 7)
        assert mat.vars["table"].class_dtype == np.float64
        for name, array in arrays.items():
            for start, stop in ((0, 11), (3, 4), (5, 11)):
                got = mat.read_rows(mat.vars[name], start, stop)
                np.testing.assert_array_equal(got, array[start:stop])


def test_writer_fills_rows_in_any_order_and_scipy_reads_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 2, size=(9, 4, 5)).astype(np.uint8)
    y = rng.integers(0, 2, size=(9, 3)).astype(np.uint8)
    with open(tmp_path / "b.mat", "wb") as fh:
        writer = mat5.Mat5Writer(fh, [("x", x.shape), ("y", y.shape)])
        for start, stop in ((6, 9), (0, 6)):
            writer.write_rows("x", start, x[start:stop])
            writer.write_rows("y", start, y[start:stop])
    loaded = scipy.io.loadmat(tmp_path / "b.mat")
    np.testing.assert_array_equal(loaded["x"], x)
    np.testing.assert_array_equal(loaded["y"], y)
    assert (tmp_path / "b.mat").read_bytes()[: len(mat5.HEADER_TEXT)] == mat5.HEADER_TEXT


def test_complex_arrays_are_refused(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "c.mat", {"z": np.ones((2, 2)) * 1j})
    with open(tmp_path / "c.mat", "rb") as fh, pytest.raises(DataError, match="c.mat z: complex"):
        mat5.Mat5File(fh, "c.mat")


def test_other_files_have_no_mat5_header() -> None:
    assert not mat5.is_mat5_header(b"\x89HDF\r\n\x1a\n" + b"\0" * 120)
    assert not mat5.is_mat5_header(b"MATLAB 5.0 MAT-file" + b" " * 109)


def test_compressed_arrays_are_read_from_a_temporary_file_that_close_frees(
    tmp_path: Path,
) -> None:
    cube = np.arange(11 * 4 * 7, dtype=np.uint8).reshape(11, 4, 7)
    scipy.io.savemat(tmp_path / "a.mat", {"cube": cube}, do_compression=True)
    open_fds = len(os.listdir("/proc/self/fd"))
    with open(tmp_path / "a.mat", "rb") as fh, mat5.Mat5File(fh, "a.mat") as mat:
        assert len(os.listdir("/proc/self/fd")) == open_fds + 2  # the file, the inflated copy
        np.testing.assert_array_equal(mat.read_rows(mat.vars["cube"], 2, 9), cube[2:9])
        assert mat.read_rows(mat.vars["cube"], 4, 4).shape == (0, 4, 7)
    assert len(os.listdir("/proc/self/fd")) == open_fds
    assert list(tmp_path.iterdir()) == [tmp_path / "a.mat"]


def test_rows_outside_the_array_are_refused(tmp_path: Path) -> None:
    scipy.io.savemat(tmp_path / "a.mat", {"table": np.ones((3, 2))})
    with open(tmp_path / "a.mat", "rb") as fh, mat5.Mat5File(fh, "a.mat") as mat:
        with pytest.raises(DataError, match="a.mat table: rows 2-4 asked of 3 rows"):
            mat.read_rows(mat.vars["table"], 2, 4)
