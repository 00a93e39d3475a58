"""The operator tells an API server outage from a refusal (runtime.outage)."""

from __future__ import annotations

import urllib3
from kubernetes.client.exceptions import ApiException

from raas_operator.runtime.outage import is_api_outage, outage_summary


def test_refused_or_cut_connections_and_busy_answers_are_outages_refusals_are_not() -> None:
    refused = urllib3.exceptions.MaxRetryError(
        None,  # type: ignore[arg-type]
        "/apis/raas.dev/v1alpha1/namespaces/raas-jobs/raasjobs/a",
        urllib3.exceptions.NewConnectionError(None, "Connection refused"),  # type: ignore[arg-type]
    )
    assert is_api_outage(refused)
    assert "unreachable (NewConnectionError" in outage_summary(refused)
    assert is_api_outage(urllib3.exceptions.ProtocolError("Response ended prematurely"))
    assert is_api_outage(ConnectionResetError())
    for status in (0, 429, 500, 503, 504):
        assert is_api_outage(ApiException(status=status, reason="x"))
    assert outage_summary(ApiException(status=503, reason="Service Unavailable")) == (
        "the API server answered 503 Service Unavailable"
    )
    for status in (400, 401, 403, 404, 409, 410, 422):
        assert not is_api_outage(ApiException(status=status, reason="x"))
    assert not is_api_outage(ValueError("a bug of the operator's own"))
