"""Readers on every shipped data file and on malformed input (property-based where it helps)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtbert.tasks import TASKS, DataError, TaskSpec, read_examples

EXPECTED = {  # examples per file as read (the quora-dev row with an empty label is skipped)
    ("sst", "train"): 8544, ("sst", "dev"): 1101, ("sst", "test"): 2210,
    ("quora", "train"): 14061, ("quora", "dev"): 3132, ("quora", "test"): 3020,
    ("sts", "train"): 6040, ("sts", "dev"): 863, ("sts", "test"): 1725,
    ("cfimdb", "train"): 1707, ("cfimdb", "dev"): 245, ("cfimdb", "test"): 488,
}


@pytest.mark.parametrize("task,split", sorted(EXPECTED))
def test_every_data_file_reads(data_dir, task, split):
    spec = TASKS[task]
    result = read_examples(spec, data_dir / spec.files[split], labelled=split != "test")
    assert len(result.examples) == EXPECTED[(task, split)]
    assert len({e.id for e in result.examples}) == len(result.examples)
    assert all(len(e.texts) == len(spec.text_columns) for e in result.examples)
    if split == "test":
        assert all(e.label is None for e in result.examples)
    elif spec.kind == "regression":
        assert all(0.0 <= e.label <= 5.0 for e in result.examples)
    else:
        assert {e.label for e in result.examples} == set(range(spec.output_dim if spec.kind == "classification" else 2))


def test_empty_label_rows_are_skipped_and_counted(data_dir):
    result = read_examples(TASKS["quora"], data_dir / "quora-dev.csv")
    assert result.skipped_empty_label == 1
    assert "skipped 1 with empty label" in result.summary()


def write(tmp_path, text, name="t.tsv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


SST = TASKS["sst"]
STS = TASKS["sts"]


@pytest.mark.parametrize("body,line,message", [
    ("\tid\tsentence\n0\ta\tgood\t9\n", 1, "missing column(s) 'sentiment'"),
    ("\tid\tsentence\tsentiment\n0\ta\tgood\t3\n1\tb\n", 3, "expected at least 4 tab-separated fields, found 2"),
    ("\tid\tsentence\tsentiment\n0\ta\tgood\tfive\n", 2, "label 'five' in column 'sentiment' is not a number"),
    ("\tid\tsentence\tsentiment\n0\ta\tgood\t5\n", 2, "label '5' is not a class of task 'sst' (0..4)"),
    ("\tid\tsentence\tsentiment\n0\ta\tgood\t2.5\n", 2, "not a class"),
    ("\tid\tsentence\tsentiment\n0\ta\t \t2\n", 2, "empty text in column 'sentence'"),
    ("", 1, "file is empty"),
])
def test_malformed_files_name_file_line_and_problem(tmp_path, body, line, message):
    path = write(tmp_path, body)
    with pytest.raises(DataError) as caught:
        read_examples(SST, path)
    assert caught.value.line == line
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_regression_label_out_of_range(tmp_path):
    path = write(tmp_path, "\tid\tsentence1\tsentence2\tsimilarity\n0\ta\tx\ty\t5.5\n")
    with pytest.raises(DataError, match=r"line 2: label 5.5 is outside task 'sts''s range \[0, 5\]"):
        read_examples(STS, path)


def test_missing_file_and_directory_are_named(tmp_path):
    with pytest.raises(DataError, match=r"absent.csv: file not found"):
        read_examples(SST, tmp_path / "absent.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(DataError, match=r"folder.csv: is a directory, expected a data file"):
        read_examples(SST, tmp_path / "folder.csv")


def test_custom_task_with_its_own_columns_and_no_id(tmp_path):
    spec = TaskSpec(name="nli", kind="classification", num_labels=3, text_columns=("premise", "hypothesis"),
                    label_column="gold", files={}, id_column=None, delimiter=",")
    path = write(tmp_path, "premise,hypothesis,gold\nA man sleeps,Someone rests,0\n\"x, y\",z,2\n")
    examples = read_examples(spec, path).examples
    assert [e.texts for e in examples] == [("A man sleeps", "Someone rests"), ("x, y", "z")]
    assert [e.label for e in examples] == [0, 2] and [e.id for e in examples] == ["0", "1"]


def test_limit_reads_the_first_examples(data_dir):
    assert len(read_examples(SST, data_dir / SST.files["train"], limit=7).examples) == 7


safe_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters='\t"\r\n'),
                    min_size=1, max_size=30).filter(lambda s: s.strip())


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(safe_text, st.integers(0, 4) | st.none()), min_size=1, max_size=20))
def test_written_rows_read_back(tmp_path_factory, rows):
    """Whatever sentences and labels are written, the reader returns them, skipping only empty labels."""
    lines = ["\tid\tsentence\tsentiment"]
    lines += [f"{i}\tid{i}\t{text}\t{'' if label is None else label}" for i, (text, label) in enumerate(rows)]
    path = tmp_path_factory.mktemp("prop") / "rows.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = read_examples(SST, path)
    kept = [(text.strip(), label) for text, label in rows if label is not None]
    assert [(e.texts[0], e.label) for e in result.examples] == kept
    assert result.skipped_empty_label == sum(label is None for _, label in rows)


@settings(max_examples=60, deadline=None)
@given(bad=st.text(min_size=1, max_size=8).filter(lambda s: s.strip() and "\t" not in s and "\n" not in s
                                                  and "\r" not in s and '"' not in s),
       position=st.integers(0, 5))
def test_any_bad_label_fails_on_its_line(tmp_path_factory, bad, position):
    try:
        ok = float(bad) in (0, 1, 2, 3, 4)
    except ValueError:
        ok = False
    rows = [f"{i}\tid{i}\tfine text\t{bad if i == position else 1}" for i in range(6)]
    path = tmp_path_factory.mktemp("bad") / "rows.tsv"
    path.write_text("\tid\tsentence\tsentiment\n" + "\n".join(rows) + "\n", encoding="utf-8")
    if ok:
        assert len(read_examples(SST, path).examples) == 6
    else:
        with pytest.raises(DataError) as caught:
            read_examples(SST, path)
        assert caught.value.line == position + 2
