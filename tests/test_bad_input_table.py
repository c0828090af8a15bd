"""The README's bad-input table is the tests' declarations, row for row."""

from __future__ import annotations

from tests.bad_inputs import README, collect, readme_table, table


def test_the_readme_lists_every_bad_input_the_tests_prove():
    kinds = collect()
    assert len(kinds) >= 40, "a bad-input test lost its declaration"
    assert readme_table(README.read_text()) == table(kinds), "README out of date: run python -m tests.bad_inputs"
