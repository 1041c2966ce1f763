import pytest

from benchmark.core.errors import UserError
from benchmark.core.registry import Registry


def test_duplicate_name_is_reported_not_overwritten():
    reg = Registry("widget")
    reg.add("a", 1)
    with pytest.raises(UserError, match="duplicate widget name 'a'"):
        reg.add("a", 2)
    assert reg.get("a") == 1


def test_unknown_name_lists_close_and_valid_choices():
    reg = Registry("widget")
    for name in ("alpha", "beta", "gamma"):
        reg.add(name, name)
    with pytest.raises(UserError) as err:
        reg.get("alpah")
    msg = str(err.value)
    assert (
        "unknown widget 'alpah'" in msg and "did you mean: alpha" in msg and "valid choices: alpha, beta, gamma" in msg
    )
    assert "\n" not in msg
