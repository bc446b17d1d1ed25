"""The CLI's terminal tables: aligned, at most 100 columns, blanks for missing values."""

from __future__ import annotations

import math

import pandas as pd

from bnstudy.terminal import WIDTH, table


def test_missing_values_are_blank_and_numbers_right_aligned():
    frame = pd.DataFrame({"name": ["a", None], "value": [1.5, math.nan], "n": [3, 12]})
    lines = table(frame).splitlines()
    assert lines[0].split() == ["name", "value", "n"]
    assert lines[2] == "  a       1.5   3"
    assert lines[3] == " " * 15 + "12"


def test_wrap_columns_wrap_at_spaces_to_fit_the_width():
    words = "the prediction interval for a new condition lies within the margin " * 2
    frame = pd.DataFrame({"id": ["first", "second"], "note": [words, "short"], "x": [1, 2]})
    lines = table(frame, wrap=["note"]).splitlines()
    assert max(map(len, lines)) <= WIDTH < len(words)
    assert len(lines) > 4 and "margin" in lines[3]  # the first row goes on below
    assert all(not line.endswith("-") for line in lines[2:])  # no word is cut


def test_a_column_is_cut_inside_a_word_only_when_spaces_are_not_enough():
    frame = pd.DataFrame({"id": ["x" * 150]})
    lines = table(frame, wrap=["id"], width=40).splitlines()
    assert max(map(len, lines)) == 40 and "".join(lines[2:]).replace(" ", "") == "x" * 150
