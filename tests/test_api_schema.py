"""The whole OpenAPI schema, property-based: schemathesis sends what the schema allows (and
what it does not) to every operation of the app, in-process, and checks that no answer is a
5xx and that every answer the schema describes matches it.

The app is the daemon's own (``create_app``), on a home where a real ``once`` run left a done
job and a failed one (records, images, sidecars, processed/ and failed/), so that the answers
about jobs are checked with something in them; no daemon runs meanwhile. A token is set, so
that any ``Host`` is answered (without one, only loopback names are) and the routes behind it
are reached.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from fastapi import FastAPI
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import APIOperation, BaseSchema, Case, CheckContext, Response
from schemathesis.checks import (  # type: ignore[attr-defined]
    not_a_server_error,
    response_schema_conformance,
)
from schemathesis.core.failures import FailureGroup

from sora_watcher import backends
from sora_watcher.config import resolve
from sora_watcher.inputs import Rules
from sora_watcher.inputs.chart import load_template
from sora_watcher.server.app import create_app
from sora_watcher.server.context import Context
from sora_watcher.server.settings import read_settings
from standin_kit.process import daemon_env, run_watcher

TOKEN = "schema-token-0123456789abcdefghijklmnop"
AUTHORIZED = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 40  # per operation


def jobs_made_by_a_real_run(home: Path) -> None:
    """One done job and one failed one, left by ``watcher.py once`` with the instant backend."""
    inbox = home / "inbox"
    inbox.mkdir()
    (inbox / "job.json").write_text(json.dumps({"prompts": ["a red fox", "a blue heron"]}))
    rows = io.StringIO()
    csv.writer(rows).writerows([["prompt", "size"], ["a fine row", ""], ["a bad row", "9x9"]])
    (inbox / "rows.csv").write_text(rows.getvalue())
    env = daemon_env(home, None, "instant", SORA_WORKER_ID="w1", SORA_SETTLE_SECONDS="0")
    done = run_watcher(home, env, "once", timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr  # the CSV's bad row failed it
    assert len(list((home / "records").glob("job_*.json"))) == 2


def app_for(home: Path) -> FastAPI:
    """The daemon's app on ``home``, its settings and rules made as the daemon makes them."""
    environ = {"SORA_HOME": str(home), "SORA_BACKEND": "instant", "SORA_WORKER_ID": "w1"}
    found = resolve({}, environ)
    capabilities = backends.load(found.backend).capabilities(found, environ)
    rules = Rules(
        found.max_input_bytes,
        found.max_prompt_chars,
        load_template(found.prompt_template),
        capabilities,
    )
    service = read_settings({}, {"SORA_API_TOKEN": TOKEN}, home)
    return create_app(Context(found, service, rules))


@pytest.fixture(scope="module")
def app_schema(tmp_path_factory: pytest.TempPathFactory) -> BaseSchema:
    home = tmp_path_factory.mktemp("schema")
    jobs_made_by_a_real_run(home)
    return schemathesis.openapi.from_asgi("/openapi.json", app_for(home))


def no_undocumented_server_error(ctx: CheckContext, response: Response, case: Case) -> None:
    """``not_a_server_error``, but for a 5xx the operation's schema says it answers: /readyz's
    503 (no daemon runs here) is its answer, not a crash."""
    documented = case.operation.definition.raw.get("responses", {})
    if str(response.status_code) not in documented:
        not_a_server_error(ctx, response, case)


CHECKS = [no_undocumented_server_error, response_schema_conformance]


def check(operation: APIOperation) -> None:
    """Up to EXAMPLES cases of ``operation``; raises what schemathesis found."""

    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case: Case) -> None:
        case.call_and_validate(headers=AUTHORIZED, checks=CHECKS)

    run()


def test_no_5xx_and_every_answer_matches_the_schema(app_schema: BaseSchema) -> None:
    # Each operation is run here, rather than through ``schemathesis.pytest.from_fixture``:
    # its lazy loader sets ``Node._nodeid``, which pytest 9 no longer has (AttributeError).
    operations = [result.ok() for result in app_schema.get_all_operations()]
    assert len(operations) >= 8  # every route of the API, not an empty schema
    found = []
    for operation in operations:
        try:
            check(operation)
        except (Exception, FailureGroup) as exc:  # every operation runs; all failures shown
            found.append(f"{operation.label}: {exc}")
    assert not found, "\n\n".join(found)
