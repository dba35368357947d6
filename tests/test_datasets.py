import math

import numpy as np
import pytest

from cascor.datasets import encode_targets, load_dataset, load_file, n_spirals, parity, two_spirals
from cascor.errors import DataError


def test_two_spirals_is_the_194_point_cmu_definition():
    ds = two_spirals(test=True)
    assert ds.X.shape == (194, 2) and set(ds.y) == {0, 1}
    i = 5
    a, r = i * math.pi / 16, 6.5 * (104 - i) / 104
    np.testing.assert_allclose(ds.X[2 * i], [r * math.sin(a), r * math.cos(a)])
    np.testing.assert_allclose(ds.X[2 * i + 1], [-r * math.sin(a), -r * math.cos(a)])
    assert ds.y[2 * i] == 1 and ds.y[2 * i + 1] == 0
    assert ds.X_test.shape == (192, 2)


def test_parity_and_targets():
    ds = parity(4)
    assert ds.X.shape == (16, 4) and ds.y.sum() == 8
    T = encode_targets(ds.y, ds.classes, -0.5, 0.5)
    assert T.shape == (16, 1) and set(T[:, 0]) == {-0.5, 0.5}
    T3 = encode_targets(np.array([2, 0, 1]), np.array([0, 1, 2]), 0.0, 1.0)
    np.testing.assert_array_equal(T3, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])


def test_n_spirals_and_sklearn_datasets():
    ds = n_spirals(3, 100, rotations=1.5, noise=0.1, seed=1)
    assert ds.X.shape == (240, 2) and ds.X_test.shape == (60, 2) and len(ds.classes) == 3
    iris = load_dataset("iris")
    assert iris.X.shape == (150, 4) and len(iris.classes) == 3
    with pytest.raises(DataError, match="unknown dataset 'spiralz'"):
        load_dataset("spiralz")


def test_csv_with_header_target_column_and_bad_cells(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("a,label,b\n1,yes,2\n3,no,4\n5,yes,6\n")
    ds = load_file(str(f), target="label")
    assert ds.X.shape == (3, 2) and list(ds.classes) == ["no", "yes"] and ds.feature_names == ["a", "b"]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,y\n1,2,0\n3,x,1\n")
    with pytest.raises(DataError, match=r"line 3, column 'b': 'x' is not a number"):
        load_file(str(bad))
    one = tmp_path / "one.csv"
    one.write_text("1,2,0\n3,4,0\n")
    with pytest.raises(DataError, match="single class"):
        load_file(str(one))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2,0\n3,4\n")
    with pytest.raises(DataError, match="expected 3 columns, found 2"):
        load_file(str(ragged))
    with pytest.raises(DataError, match="does not exist"):
        load_file(str(tmp_path / "missing.csv"))


def test_npz_files(tmp_path):
    f = tmp_path / "d.npz"
    np.savez(f, X=np.random.default_rng(0).normal(size=(20, 3)), y=np.linspace(0, 1, 20))
    ds = load_file(str(f))
    assert ds.task == "regression" and ds.X.shape == (20, 3)
    g = tmp_path / "e.npz"
    np.savez(g, inputs=np.zeros((2, 2)))
    with pytest.raises(DataError, match="needs arrays 'X' and 'y'"):
        load_file(str(g))
