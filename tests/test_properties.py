"""Property-based: generated data files, encodings and configs either parse correctly or fail with one
DataError / ConfigError naming the file and line or the field, never any other exception."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtbert.config import ConfigError, load_config
from mtbert.tasks import TASKS, DataError, read_examples
from mtbert.tasks.readers import UNSAFE_ID

SST, STS = TASKS["sst"], TASKS["sts"]
FIELD = st.lists(st.sampled_from(list("ab c,\"'\t\n\r\\é😀\x00") + [" , ", "3", "4.5", "-1", "nan"]),
                 max_size=8).map("".join)
CLEAN = st.text(alphabet=st.sampled_from(list("abcdefgh xyz")), min_size=1, max_size=10).map(str.strip).filter(bool)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def read(spec, data: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.csv"
        path.write_bytes(data)
        return read_examples(spec, path)


def header(spec) -> str:
    return "\t".join(["", "id", *spec.text_columns, spec.label_column]) + "\n"


@SETTINGS
@given(rows=st.lists(st.lists(FIELD, min_size=0, max_size=6), max_size=8), spec=st.sampled_from([SST, STS]),
       noise=st.one_of(st.none(), st.binary(min_size=1, max_size=3)), where=st.integers(0, 10_000))
def test_any_generated_file_parses_or_is_one_data_error(rows, spec, noise, where):
    text = (header(spec) + "".join("\t".join(row) + "\n" for row in rows)).encode("utf-8")
    if noise is not None:  # bytes that may not be UTF-8, anywhere
        cut = where % (len(text) + 1)
        text = text[:cut] + noise + text[cut:]
    try:
        result = read(spec, text)
    except DataError as error:
        assert error.path.endswith("generated.csv") and error.line >= 0 and "\n" not in error.problem
        return
    ids = [e.id for e in result.examples]
    assert len(ids) == len(set(ids)) and not any(UNSAFE_ID.search(i) or not i for i in ids)
    for example in result.examples:
        assert all(example.texts) and example.label is not None
        if spec is SST:
            assert example.label in range(5)
        else:
            assert 0.0 <= example.label <= 5.0 and math.isfinite(example.label)


@SETTINGS
@given(rows=st.lists(st.tuples(CLEAN, CLEAN, st.integers(0, 4)), min_size=1, max_size=8, unique_by=lambda r: r[0]))
def test_clean_generated_files_parse_exactly(rows):
    text = header(SST) + "".join(f"{n}\t{i}\t{t}\t{label}\n" for n, (i, t, label) in enumerate(rows))
    result = read(SST, text.encode("utf-8"))
    assert [(e.id, e.texts[0], e.label, e.line) for e in result.examples] == [
        (i, t, label, n + 2) for n, (i, t, label) in enumerate(rows)]


NUMERIC_FIELDS = ["train.lr", "train.eps", "train.epochs", "train.batch_size", "train.warmup_ratio",
                  "train.weight_decay", "train.max_grad_norm", "train.max_steps", "train.bucket_batches",
                  "train.num_threads", "data.limit", "data.shrink", "model.max_length", "train.smart.epsilon",
                  "train.smart.steps", "train.smart.beta", "train.betas", "train.task_weights", "train.device",
                  "train.precision", "model.heads.sst.dropout"]
VALUES = st.one_of(st.integers(-5, 1000), st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.sampled_from(["", "x", "[1", "{a: 1}", "[0.9]", "[0.9, 0.99, 1]", "null", ".nan", "-.inf",
                                    "cuda:1", "bf16", "1e-3", "{sst: -1}", "{: }", "'"]))


@SETTINGS
@given(changes=st.lists(st.tuples(st.sampled_from(NUMERIC_FIELDS), VALUES), min_size=1, max_size=4))
def test_any_generated_config_loads_in_range_or_is_one_config_error(changes):
    overrides = [f"{field}={value}" for field, value in changes]
    try:
        config = load_config("recipes/quickstart.yaml", overrides)
    except ConfigError as error:
        assert "\n" not in str(error)
        return
    from mtbert.validation import config_problems
    assert config_problems(config.to_dict()) == []
    assert config.train.lr > 0 and math.isfinite(config.train.lr) and config.train.epochs >= 1
