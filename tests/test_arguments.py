"""stemserver/arguments.py: the argparse types every command line shares."""

from __future__ import annotations

import argparse

import pytest

from stemserver import arguments


@pytest.mark.parametrize("kind, text, value", [
    (arguments.positive_int, "3", 3), (arguments.non_negative_int, "0", 0), (arguments.positive_float, "0.5", 0.5),
    (arguments.non_negative_float, "0", 0.0), (arguments.port, "0", 0), (arguments.port, "65535", 65535),
    (arguments.non_empty_text, "  warm pad ", "warm pad"),
])
def test_values_in_range_are_read(kind, text, value):
    assert kind(text) == value


@pytest.mark.parametrize("kind, text, said", [
    (arguments.positive_int, "0", "at least 1"), (arguments.positive_int, "1.5", "whole number"),
    (arguments.non_negative_int, "-1", "at least 0"), (arguments.positive_float, "nan", "finite"),
    (arguments.positive_float, "inf", "finite"), (arguments.positive_float, "0", "greater than 0"),
    (arguments.non_negative_float, "-0.1", "at least 0"), (arguments.port, "70000", "port"),
    (arguments.port, "-1", "port"), (arguments.non_empty_text, "   ", "empty"),
])
def test_values_out_of_range_are_usage_errors_that_say_the_rule(kind, text, said):
    with pytest.raises(argparse.ArgumentTypeError, match=said):
        kind(text)
