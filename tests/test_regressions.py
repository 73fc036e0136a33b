"""Minimal reproductions of compiler bugs found by the random-program tests."""

import rasp_lab
from rasp_lab import rasp


def test_query_independent_table_over_a_none_able_query_selects_nothing_for_none():
    """A predicate true for every (query, key) value pair is a key bias only if the query
    always has a value: a None query must select nothing (Hypothesis found this in causal mode)."""
    previous = rasp.Map(lambda i: i - 1, rasp.indices)
    nothing_before = rasp.Aggregate(rasp.Select(rasp.indices, previous, rasp.Comparison.EQ), rasp.tokens).named("prev")
    always = rasp.Select(rasp.tokens, nothing_before, lambda k, q: True).named("always")
    width = rasp.SelectorWidth(always).named("width")
    model = rasp_lab.compile(width, {0, 1}, 4)
    for xs in ([0], [1, 1], [0, 1, 0, 1]):
        expected = width(xs)
        assert model.run(xs) == expected
    assert width([0, 1, 0])[0] == 0  # position 0 has no previous token: None query
