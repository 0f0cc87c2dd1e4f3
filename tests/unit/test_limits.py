"""Input limits name the limit they enforce."""

from __future__ import annotations

import pytest

from ragline.core.errors import InvalidInput
from ragline.core.limits import Limits, check_text


def test_metadata_depth_is_measured_without_recursion_on_hostile_nesting():
    deep: dict = {}
    for _ in range(5000):
        deep = {"d": deep}
    with pytest.raises(InvalidInput, match="max_metadata_depth"):
        Limits().check_metadata(deep)


def test_metadata_within_limits_passes_and_oversized_metadata_names_the_limit():
    Limits().check_metadata({"lang": "en", "tags": ["a", "b"], "source": {"page": 3}})
    with pytest.raises(InvalidInput, match="max_metadata_bytes"):
        Limits(max_metadata_bytes=64).check_metadata({"k": "v" * 100})


@pytest.mark.parametrize(
    "filters, limit",
    [
        ({f"k{i}": 1 for i in range(3)}, "max_filter_keys"),
        ({"k": list(range(5))}, "max_filter_values"),
        ({"k": "v" * 11}, "max_filter_value_chars"),
        ({"bad key": "v"}, "letters, digits"),
        ({"k": []}, "empty list"),
    ],
)
def test_filters_over_a_limit_are_refused(filters, limit):
    with pytest.raises(InvalidInput, match=limit):
        Limits(max_filter_keys=2, max_filter_values=4, max_filter_value_chars=10).check_filters(filters)


def test_a_lone_surrogate_is_invalid_text():
    with pytest.raises(InvalidInput, match="surrogate"):
        check_text("ok \ud800", "question")
