"""The admin's screens and the session's end, in a real browser: kubectl with its history and its
refusals, the service logs, the resources view (which degrades while the route is missing), a tenant
visible string rendered as text, and an expired token bringing the sign-in back with a message."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import RunningServer

pytestmark = pytest.mark.browser

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def srv(module_servers: Callable[..., RunningServer]) -> RunningServer:
    return module_servers()


@pytest.fixture
def page(chromium: Any) -> Any:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.dialogs = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    yield page
    context.close()


def nav(page: Any, name: str) -> Any:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


def sign_in_as_admin(page: Any, srv: RunningServer) -> None:
    page.goto(srv.base_url + "/")
    page.get_by_label("Password").fill("password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_text("admin (admin)").wait_for()


def test_kubectl_logs_and_resources(srv: RunningServer, page: Any, artifacts: Path) -> None:
    sign_in_as_admin(page, srv)
    nav(page, "kubectl").click()
    command = page.get_by_label("kubectl command")
    command.fill("get nodes")
    command.press("Enter")
    page.locator(".run:not(.refused) pre", has_text="NAME").wait_for()
    command.fill("delete pods --all -A")
    command.press("Enter")
    refused = page.locator(".run.refused pre")
    refused.wait_for()
    assert refused.inner_text().startswith("Refused: ")
    assert "delete" in refused.inner_text()
    # The history walks back with the arrow keys.
    command.press("ArrowUp")
    assert command.input_value() == "delete pods --all -A"
    command.press("ArrowUp")
    assert command.input_value() == "get nodes"
    page.screenshot(path=str(artifacts / "admin-kubectl.png"), full_page=True)

    # The refusal is in the audit log with its reason.
    nav(page, "Audit log").click()
    page.get_by_label("Action").fill("admin.kubectl")
    page.get_by_role("button", name="Filter").click()
    page.locator("td .outcome.denied").first.wait_for()
    page.screenshot(path=str(artifacts / "admin-audit-kubectl.png"), full_page=True)

    nav(page, "Service logs").click()
    # What the screen shows is what the route answers (a test server keeps no log ring of its own).
    lines = srv.admin().get("/api/admin/logs", params={"lines": 500, "level": "info"}).json()["lines"]
    if lines:
        page.locator("pre.logs", has_text=lines[-1]["message"][:40]).wait_for()
    else:
        page.locator("pre.logs", has_text="No lines at this level.").wait_for()
    page.screenshot(path=str(artifacts / "admin-service-logs.png"), full_page=True)

    nav(page, "Resources").click()
    answered = srv.admin().get("/api/admin/resources")
    if answered.status_code == 404:
        page.get_by_text("has no resources view").wait_for()
    else:
        page.locator("section h2, section table").first.wait_for()
    page.screenshot(path=str(artifacts / "admin-resources.png"), full_page=True)
    assert page.dialogs == []


def test_a_tenant_visible_string_stays_text(srv: RunningServer, page: Any, sklearn_dir: Path) -> None:
    """A model published with a description of markup, seen by the admin in the audit log and the
    publications list: shown as the characters typed, no element made, no request for `x`."""
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    tenant = srv.tenant("tenant-x")
    r = tenant.post(
        "/api/models", json={"name": "xss", "framework": "sklearn", "storageUri": str(sklearn_dir)}
    )
    assert r.status_code == 201, r.text
    r = tenant.put("/api/models/xss", json={"storageUri": XSS})
    assert r.status_code == 400  # refused, and its text is in the audit log
    sign_in_as_admin(page, srv)
    nav(page, "Audit log").click()
    page.get_by_label("Tenant").fill("tenant-x")
    page.get_by_role("button", name="Filter").click()
    page.locator("td", has_text="model.create").first.wait_for()
    nav(page, "Models").click()
    page.locator("tr[data-model='xss']").wait_for()
    assert page.locator("img").count() == 0
    assert page.dialogs == []
    assert not [u for u in requests if u.rstrip("/").endswith("/x")]


def test_an_expired_token_brings_the_sign_in_back(srv: RunningServer, page: Any) -> None:
    srv.platform.tenants.create("tenant-e")
    token = srv.platform.tokens.issue_tenant("tenant-e", ttl=8)
    page.goto(srv.base_url + "/")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in with token").click()
    page.get_by_text("tenant-e-user · tenant-e").wait_for()
    # At the token's expiry the console signs out by itself and says why.
    page.get_by_text("Your session expired. Sign in again.").wait_for(timeout=30_000)
    assert page.evaluate("sessionStorage.length") == 0
    # A token refused by the API says so at sign-in, in plain words.
    page.get_by_label("Token").fill("not-a-token")
    page.get_by_role("button", name="Sign in with token").click()
    page.get_by_role("alert").filter(has_text="Authentication required: Malformed token").wait_for()
