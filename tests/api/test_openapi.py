"""The OpenAPI document and the docs page (served from local static files, no CDN)."""

from __future__ import annotations

import re

from django.contrib.staticfiles import finders
from django.test import Client

BASE = "/api/v1/manage"


def test_openapi_document__3_1_with_every_operation_and_problem_responses(db):
    response = Client().get(f"{BASE}/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    operations = {
        (method.upper(), path.removeprefix(BASE))
        for path, methods in document["paths"].items()
        for method in methods
    }
    assert operations == {
        ("GET", "/agents"),
        ("GET", "/agents/{slug}"),
        ("GET", "/agents/{slug}/versions"),
        ("POST", "/agents/{slug}/versions"),
        ("GET", "/agents/{slug}/versions/{number}"),
        ("GET", "/environments"),
    }
    create = document["paths"][f"{BASE}/agents/{{slug}}/versions"]["post"]
    assert {"201", "401", "403", "404", "409", "422"} <= set(create["responses"])
    assert create["security"] == [{"TokenAuth": []}]
    problem = document["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])


def test_docs_page__only_local_assets(db):
    response = Client().get(f"{BASE}/docs")

    assert response.status_code == 200
    html = response.content.decode()
    # Every script, stylesheet and icon is one of ours (static files), none from a CDN.
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets, html
    assert all(asset.startswith("/static/") for asset in assets), assets
    assert "http://" not in html and "https://" not in html
    for asset in assets:
        assert finders.find(asset.removeprefix("/static/")), asset
    # No validator badge (Swagger UI would load it from validator.swagger.io).
    assert '"validatorUrl": null' in html
