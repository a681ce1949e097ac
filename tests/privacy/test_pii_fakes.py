"""Format-preserving fakes: the cycle walk is bounded and refuses values outside its set, and a
North American number whose exchange begins with 0 or 1 still unmasks."""

from __future__ import annotations

import pytest

from trustforge.errors import DataError
from trustforge.privacy import Masker, unmask
from trustforge.privacy._fpe import FPE

KEY = bytes(range(32))


def test_the_cycle_walk_is_bounded():
    calls = []

    def only_zero(v: int) -> bool:  # a set of one value: the walk from 0 goes round its whole cycle
        calls.append(v)
        if len(calls) > 5000:
            raise RuntimeError("the cycle walk did not stop")
        return v == 0

    with pytest.raises(DataError, match="no value of the set in 1000 steps"):
        FPE(KEY).encrypt(0, 10**6, b"t", valid=only_zero)


@pytest.mark.parametrize("x,n", [(5, 10), (10, 10), (-1, 10)])
def test_a_value_outside_the_set_is_refused_not_walked(x, n):
    with pytest.raises(DataError, match="outside the set"):
        FPE(KEY).encrypt(x, n, b"t", valid=lambda v: v != 5)
    with pytest.raises(DataError, match="outside the set"):
        FPE(KEY).decrypt(x, n, b"t", valid=lambda v: v != 5)


@pytest.mark.parametrize("number", ["+1 415 155 0132", "+1 415 055 0132", "+1 415 555 0132"])
def test_a_north_american_number_unmasks_whatever_its_exchange(number):
    text = f"call {number} now"
    fake = Masker("fake", key=KEY).mask_text(text)
    assert fake != text and unmask(fake, KEY) == text
