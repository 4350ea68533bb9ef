"""Every operation of the OpenAPI document, fuzzed with valid and invalid requests
(Schemathesis + Hypothesis), authenticated as a real publisher: no 5xx, every status and
media type documented, every body and header conforming to its schema.

Operations are driven one by one from the loaded schema (Schemathesis' pytest plugin,
`from_fixture`, does not run under pytest 9), and every failure is collected, so one run
reports all of them grouped by operation instead of stopping at the first."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Bounded for CI: about 30 requests per operation, no shrinking (failures are reported as
# the requests were sent).
FUZZ = settings(
    max_examples=30,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    database=None,
)


def _summary(error: BaseException) -> str:
    """The failure's title, then what was received and documented, on one line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    wanted = [line for line in lines if line.startswith(("Received", "Documented", "["))]
    return " | ".join([*(lines[:1] or [type(error).__name__]), *wanted[:3]])[:300]


def test_every_operation_answers_as_documented(api_schema: Any, fuzz_auth: dict[str, str]) -> None:
    failures: dict[str, set[str]] = defaultdict(set)
    operations = 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @FUZZ
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            headers = dict(case.headers or {})
            # Keep a real token unless the case is about the Authorization header itself.
            headers.setdefault("Authorization", fuzz_auth["Authorization"])
            try:
                case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)
            except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 (collected, reported)
                for part in getattr(error, "exceptions", None) or [error]:
                    failures[case.operation.label].add(_summary(part))

        fuzz()
    assert operations > 10
    report = "\n".join(
        f"{label}:\n  " + "\n  ".join(sorted(found)) for label, found in sorted(failures.items())
    )
    assert not failures, f"{len(failures)} of {operations} operations failed:\n{report}"
