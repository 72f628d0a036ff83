"""ui.clinic.sized_cache: many small tables (one per therapist) are kept; large ones stay few."""
import pandas as pd
import pytest
import streamlit as st

from ui.clinic import SMALL_ROWS, sized_cache


@pytest.mark.parametrize("cache", [st.cache_resource, st.cache_data])
def test_small_tables_of_twenty_therapists_are_all_kept(cache):
    calls = []

    @sized_cache(cache, large=2, small=32)
    def per_therapist(key: str, _data: pd.DataFrame) -> int:
        calls.append(key)
        return len(_data)

    tables = {f"T{t:02d}": pd.DataFrame({"x": range(t + 1)}) for t in range(20)}
    for _ in range(3):  # three rounds of pages by 20 therapists
        for key, table in tables.items():
            assert per_therapist(key, table) == len(table)
    assert len(calls) == 20  # each computed once; with a cache of 8 entries it was 60
    per_therapist.clear()


def test_large_tables_keep_their_own_small_cache():
    calls = []

    @sized_cache(large=2, small=32)
    def per_dataset(key: str, _data: pd.DataFrame) -> int:
        calls.append(key)
        return len(_data)

    big = pd.DataFrame({"x": range(SMALL_ROWS + 1)})
    for key in ["a", "b", "c", "a"]:  # a third large table evicts the first
        per_dataset(key, big)
    assert calls == ["a", "b", "c", "a"]
    small = pd.DataFrame({"x": range(SMALL_ROWS)})
    per_dataset("s", small)
    per_dataset("s", small)
    assert calls[-1] == "s" and calls.count("s") == 1
    per_dataset.clear()
    per_dataset("s", small)
    assert calls.count("s") == 2
