"""Schemathesis against the server's own OpenAPI schema: whatever it sends, no 5xx.

Generated requests (valid and invalid bodies, odd path parameters, missing fields) go to the
ASGI app directly, with a valid token so they reach the parsers and the model. Bounded: 15
examples per operation and generation mode (positive and negative), derandomized, no deadline.
"""

from __future__ import annotations

import pytest
import schemathesis
from _serving import register
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from trustforge.serve import ModelService, ServeConfig, create_app

EXAMPLES = 15


@pytest.mark.slow
def test_no_generated_request_gets_a_server_error(packages, registry, tmp_path):
    register(registry, packages["mixed"], tmp_path)  # numbers, text and yes/no columns: the richest parser paths
    svc = ModelService("models:/mixed-serve@champion", ServeConfig(workers=0, max_request_bytes=64 * 1024), registry=registry).start()
    registry.access.add_user("fuzzer", "admin")
    headers = {"Authorization": f"Bearer {registry.access.issue_token('fuzzer')}"}
    try:
        schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(svc))
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15 and any(op.path == "/v2/models/{model_name}/infer" for op in operations)
        seen: list[tuple[str, int, str]] = []
        for op in operations:
            # Half the runs name the served model, so generated bodies reach the request parsers.
            fixed = {
                k: v for k, v in {"model_name": "mixed-serve", "model_version": "1"}.items() if any(p.name == k for p in op.path_parameters)
            }
            for mode, path_parameters in (
                (GenerationMode.POSITIVE, None),
                (GenerationMode.POSITIVE, fixed),
                (GenerationMode.NEGATIVE, None),
            ):
                if path_parameters == {}:
                    continue

                @given(case=op.as_strategy(generation_mode=mode, path_parameters=path_parameters))
                @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
                def no_server_error(case) -> None:
                    response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
                    seen.append((op.path, response.status_code, response.text[:200]))

                try:
                    no_server_error()
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE  # nothing to get wrong: no parameters, no body
        assert len(seen) >= len(operations) * EXAMPLES  # every operation was exercised
        statuses = {status for _, status, _ in seen}
        assert 200 in statuses and 400 in statuses and all(status < 500 for status in statuses)
        parsed = [text for path, status, text in seen if path.endswith("/infer") and status == 400]
        assert parsed, "no generated infer request reached the request parser"
    finally:
        svc.close()
