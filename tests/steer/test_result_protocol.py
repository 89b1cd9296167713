"""Every steer result honours the Result protocol of :mod:`lmecon.result`."""

from __future__ import annotations

from typing import Any

import pytest

from lmecon.result import check_result
from tests.steer.conftest import RESULT_TYPES, tiny_result


@pytest.mark.parametrize("name", RESULT_TYPES)
def test_result_protocol(name: str, tok: Any) -> None:
    result = tiny_result(name, tok)
    assert type(result).__name__ == name
    check_result(result)
