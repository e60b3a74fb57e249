import numpy as np
import pandas as pd
import pytest

from ntkit.io.labels import Classes, read_labelled, regression_targets


def test_classes_are_defined_by_training_and_applied_to_later_files(tmp_path):
    pd.DataFrame({"sequence": ["ACGT"] * 4, "label": ["promoter", "none", "enhancer", "none"]}).to_csv(tmp_path / "train.tsv", sep="\t", index=False)
    pd.DataFrame({"sequence": ["ACGT"] * 2, "label": ["promoter", "none"]}).to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    _, y, classes = read_labelled(tmp_path / "train.tsv", "classification")
    assert classes.names == ("enhancer", "none", "promoter") and y.tolist() == [2, 1, 0, 1]
    # a test file with a subset of the classes keeps the training numbering (numbered on its own: none=0, promoter=1)
    _, ty, _ = read_labelled(tmp_path / "test.tsv", "classification", classes)
    assert ty.tolist() == [2, 1]
    pd.DataFrame({"sequence": ["ACGT"], "label": ["silencer"]}).to_csv(tmp_path / "new.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"label\(s\) \['silencer'\] not among the training classes"):
        read_labelled(tmp_path / "new.tsv", "classification", classes)


def test_integer_labels_sort_by_value_and_floats_that_are_integers_are_integers():
    c = Classes.fit([10, 2, 2.0, "1", True])
    assert c.names == (1, 2, 10) and c.encode([2.0, "10", 1]).tolist() == [1, 2, 0]


@pytest.mark.parametrize("values,match", [([0, 0, 0], "at least 2 classes"), ([0, 1, float("nan")], "missing label"),
                                          ([0, 1, None], "missing label"), (["a", "b", ""], "missing label")])
def test_bad_class_labels(values, match):
    with pytest.raises(ValueError, match=match):
        Classes.fit(values, "t.tsv")


def test_regression_targets():
    np.testing.assert_array_equal(regression_targets(["1.5", 2, 3.25]), np.array([1.5, 2, 3.25], dtype=np.float32))
    with pytest.raises(ValueError, match="row 2: regression target 'high' is not a number"):
        regression_targets([1, "high"])
    with pytest.raises(ValueError, match="row 1: regression target nan is missing"):
        regression_targets([float("nan")])


def test_table_errors(tmp_path):
    pd.DataFrame({"sequence": ["ACGT", ""], "label": [0, 1]}).to_csv(tmp_path / "e.csv", index=False)
    with pytest.raises(ValueError, match=r"empty sequence in row\(s\) \[2\]"):
        read_labelled(tmp_path / "e.csv", "classification")
    pd.DataFrame({"sequence": ["ACGT"], "class": [0]}).to_csv(tmp_path / "n.csv", index=False)
    with pytest.raises(ValueError, match="no 'label' column"):
        read_labelled(tmp_path / "n.csv", "classification")


def test_tables_in_memory_read_as_files_do(tmp_path):
    """A pandas DataFrame, a pyarrow Table and a Hugging Face datasets.Dataset give what the same
    table read from a file gives (sequences, labels, classes, the other columns)."""
    import pandas as pd
    import pyarrow as pa

    from ntkit.io.sequences import read_sequences
    from ntkit.io.labels import read_labelled

    df = pd.DataFrame({"name": ["a", "b", "c"], "sequence": ["ACGT", "GGCCA", "TTTTN"], "label": ["enh", "no", "enh"],
                       "gc": [0.5, 0.8, 0.0]})
    df.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    want = read_labelled(tmp_path / "t.tsv", "classification")
    tables = [df, pa.Table.from_pandas(df)]
    try:
        import datasets

        tables.append(datasets.Dataset.from_pandas(df))
    except ImportError:
        pass
    for t in tables:
        seqs, y, classes = read_labelled(t, "classification")
        assert seqs == want[0] and y.tolist() == want[1].tolist() and list(classes.names) == list(want[2].names)
        ids, s2, rest = read_sequences(t)
        assert ids == ["a", "b", "c"] and s2 == want[0] and list(rest.columns) == ["label", "gc"]
    with pytest.raises(ValueError, match="the table: no 'target' column"):
        read_labelled(df, "classification", label_column="target")
    with pytest.raises(TypeError, match="a path or a table"):
        read_sequences(42)
