"""Requests the API cannot serve still get a problem object, never a 500 or an HTML page."""

from __future__ import annotations

from django.conf import settings

from tests.api.conftest import BASE, assert_problem


def test_body_over_the_size_limit__413(api, token_for, versions):
    too_big = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)

    response = api.post("/agents/support-bot/versions", token_for("editor"), raw=too_big)

    body = assert_problem(response, 413, "too_large")
    assert str(settings.DATA_UPLOAD_MAX_MEMORY_SIZE) in body["detail"]


def test_unknown_path_under_the_prefix__404_problem(api, token_for, db):
    response = api.get("/no-such-thing", token_for("viewer"))

    body = assert_problem(response, 404, "not_found")
    assert BASE in body["detail"]
    assert_problem(api.post("/agents/support-bot/nope", body={}), 404, "not_found")


def test_method_not_allowed__405(api, token_for, db):
    response = api.call("DELETE", "/agents", token_for("admin"))

    assert response.status_code == 405
