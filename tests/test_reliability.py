"""A few seeded cases of every class in tests/reliability.py (which writes docs/reliability.md): no bad
input or fault may end in a traceback or a wrong exit status."""

from __future__ import annotations

import pytest

import reliability


@pytest.fixture(scope="module")
def table(tmp_path_factory, data_dir):
    return reliability.run_classes(cases=4, seed=1, folder=tmp_path_factory.mktemp("reliability"))


def test_no_class_of_bad_input_ends_in_a_traceback(table):
    assert set(table) == set(reliability.CLASSES)
    for name, entry in table.items():
        assert entry["counts"]["traceback or other"] == 0, (name, entry["examples"])
    assert table["non-finite training (learning rates that diverge)"]["counts"]["stopped with a reason (exit 1)"] == 4
    assert table["two writers in one run directory"]["counts"]["one-line error (exit 2)"] == 4
