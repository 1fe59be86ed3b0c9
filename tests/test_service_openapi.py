"""The OpenAPI document against the running app: Schemathesis generates requests from it
and checks the answers (no 500s, documented status codes, bodies matching the schemas)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from lab.config import Settings
from service import create_app
from service.db import close_db


@pytest.fixture(scope="module")
def app(db_url):
    app = create_app({"SETTINGS": Settings(database_url=db_url), "TESTING": True})
    yield app
    close_db(app)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case):
    # Whether arbitrary bytes are valid CSV for a table is beyond a JSON schema, so the
    # "schema-valid data must be accepted" check does not apply; everything else does.
    case.call_and_validate(
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ]
    )
