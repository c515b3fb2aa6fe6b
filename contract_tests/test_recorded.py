"""Rules only a cassette checks (``--cassette``, collected in such a run only): every
recorded error answer, whatever its request, is in the provider's envelope with a status
and code of its catalogue. This is where a provider's drifted error bodies show."""

from __future__ import annotations

import pytest

from .catalogue import Rule
from .recorded import check_recorded_errors
from .session import Contract


@pytest.mark.rules("recorded")
def test_recorded(rule: Rule, contract: Contract) -> None:
    contract.require(rule)
    check_recorded_errors(contract, rule)
