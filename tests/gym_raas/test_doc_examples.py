"""The examples in the environments' docstrings run and print what they show."""

from __future__ import annotations

import doctest
from types import ModuleType

import pytest

from gym_raas.envs import pendulum, vector


@pytest.mark.parametrize("module", [pendulum, vector], ids=lambda module: module.__name__)
def test_docstring_examples_hold(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAAS_AGENT_SOCKET", raising=False)
    result = doctest.testmod(module, extraglobs={"np": pendulum.np}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
