"""Loaders return clean numeric features and refuse bad input with one clear line."""

import numpy as np
import pytest

from l2c import datasets
from l2c.datasets import DataError


def test_iris_has_four_named_features_and_three_species():
    iris = datasets.load_iris()
    assert iris.feature_names == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert iris.class_labels == ["setosa", "versicolor", "virginica"]
    assert iris.features.shape == (150, 4)
    assert sorted(np.bincount(iris.target_codes)) == [50, 50, 50]


def test_house_prices_match_the_shipped_file():
    house = datasets.load_house_prices()
    assert house.features.shape == (506, 13)
    assert house.feature_names[0] == "CRIM" and house.feature_names[-1] == "LSTAT"
    assert house.target.name == "MEDV"
    # sha256 of the file as scikit-learn 1.1.3 shipped it (src/l2c/data/README.md).
    assert house.data_sha256 == "d98212636026544fc9b9c0f372e5f819872e6fa6fa757ab025efdda22180f2d6"


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_own_csv_classification(tmp_path):
    path = write(tmp_path, "a,b,label\n1,2,x\n3,4,y\n5,6,x\n")
    data = datasets.load_csv(path, target="label", task="classification")
    assert data.name == "data" and data.feature_names == ["a", "b"]
    assert data.class_labels == ["x", "y"]
    assert list(data.target_codes) == [0, 1, 0]


def test_own_csv_keeps_missing_feature_values_as_nan(tmp_path):
    path = write(tmp_path, "a,b,y\n1,,2.5\n3,4,1.0\n")
    data = datasets.load_csv(path, target="y", task="regression")
    assert np.isnan(data.features.iloc[0, 1])


@pytest.mark.parametrize(
    "text, target, task, message",
    [
        ("a,b,y\n1,2,3\n", "price", "regression", "no target column 'price'"),
        ("a,b,y\n1,cheap,3\n", "y", "regression", "feature column 'b' is not numeric (row 1: 'cheap')"),
        ("a,y\n1,x\n2,x\n", "y", "classification", "single class ('x')"),
        ("a,y\n1,2\n2,\n", "y", "regression", "target column 'y' is empty in 1 row(s)"),
        ("a,y\n1,2\n2,big\n", "y", "regression", "regression target 'y' is not numeric (row 2: 'big')"),
        ("", "y", "regression", "the file is empty"),
        ("a,y\n", "y", "regression", "no data rows"),
        ("y\n1\n2\n", "y", "regression", "no feature columns"),
        ("a,y\ninf,1\n2,2\n", "y", "regression", "feature column 'a' holds an infinite value"),
        ("a,y\n1,2\n", "y", "clustering", "task must be one of classification, regression"),
    ],
)
def test_bad_csv_is_refused_with_a_clear_line(tmp_path, text, target, task, message):
    path = write(tmp_path, text)
    with pytest.raises(DataError) as err:
        datasets.load_csv(path, target=target, task=task)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        datasets.load_csv(tmp_path / "nope.csv", target="y", task="regression")
