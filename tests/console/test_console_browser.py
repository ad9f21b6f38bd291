"""The console in a real browser, walked as a user would: sign in as the admin, create a tenant and mint
its token, sign in as the tenant, deploy the iris model and watch it turn Ready without reloading, test
a prediction, publish, copy the key and call the gateway with it, see usage and a 429 on the charts,
rotate, unpublish, sign out. At 1280 px and at 390 px. Screenshots land in tests/artifacts/console/."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import IRIS_ROW, RunningServer

pytestmark = pytest.mark.browser

WIDTHS = {"wide": {"width": 1280, "height": 900}, "narrow": {"width": 390, "height": 844}}
XSS = "<img src=x onerror=alert(1)>"


class Walk:
    """A page with its screenshots numbered in order, and what the browser asked for and was told."""

    def __init__(self, page: Any, folder: Path, label: str) -> None:
        self.page = page
        self.folder = folder
        self.label = label
        self.count = 0
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.console_pages: list[Any] = []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("request", lambda r: self.requests.append(r.url))
        page.on(
            "response",
            lambda r: self.console_pages.append(r) if r.request.resource_type == "document" else None,
        )

    def shot(self, name: str) -> None:
        self.count += 1
        self.page.screenshot(
            path=str(self.folder / f"{self.label}-{self.count:02d}-{name}.png"), full_page=True
        )


def nav(page: Any, name: str) -> Any:
    return page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True)


def gateway_call(url: str, key: str) -> int:
    return httpx.post(
        f"{url}/predict", headers={"X-API-Key": key}, json={"instances": [IRIS_ROW]}, timeout=30
    ).status_code


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_walk(
    width: str,
    module_servers: Callable[..., RunningServer],
    chromium: Any,
    sklearn_dir: Path,
    artifacts: Path,
) -> None:
    # A control plane per width: each walk starts from an empty install, as a new user's does.
    console_server = module_servers()
    tenant, model = f"walk-{width}", f"iris-{width}"
    context = chromium.new_context(
        viewport=WIDTHS[width], color_scheme="light" if width == "wide" else "dark"
    )
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console_server.base_url)
    page = context.new_page()
    walk = Walk(page, artifacts, width)
    try:
        _walk(walk, page, console_server, tenant, model, sklearn_dir)
    finally:
        context.close()
    # Every console page came with the strict CSP.
    assert walk.console_pages
    for response in walk.console_pages:
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy, response.url
    assert walk.dialogs == []


def _walk(walk: Walk, page: Any, srv: RunningServer, tenant: str, model: str, model_dir: Path) -> None:
    page.goto(srv.base_url + "/")
    page.get_by_role("heading", name="Sign in to inferbox").wait_for()
    walk.shot("signin")

    # The admin signs in, creates the tenant and mints its token.
    page.get_by_label("Password").fill("password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.get_by_text("admin (admin)").wait_for()
    nav(page, "Overview").click()
    page.get_by_role("heading", name="Nodes").wait_for()
    walk.shot("admin-overview")
    nav(page, "Tenants").click()
    page.get_by_label("New tenant").fill(tenant)
    page.get_by_role("button", name="Create tenant").click()
    row = page.locator("tr", has_text=tenant)
    row.get_by_role("button", name="Mint token").click()
    page.get_by_label(re.compile("Valid for")).fill("1800")
    page.locator("dialog").get_by_role("button", name="Mint token").click()
    token = page.get_by_test_id("minted-token").inner_text().strip()
    assert token.count(".") == 2
    walk.shot("admin-tenant-token")
    # The audit log shows the minting, filtered to this tenant.
    nav(page, "Audit log").click()
    page.get_by_label("Tenant").fill(tenant)
    page.get_by_role("button", name="Filter").click()
    page.locator("td", has_text="tenant.tokenIssued").first.wait_for()
    walk.shot("admin-audit")

    # Sign out, then in as the tenant with the pasted token.
    page.get_by_role("button", name="Sign out").click()
    page.get_by_text("You signed out.").wait_for()
    assert page.evaluate("sessionStorage.length") == 0
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in with token").click()
    page.get_by_text(f"{tenant}-user · {tenant}").wait_for()
    page.get_by_text("No models yet.").wait_for()
    page.locator("#live[data-state='live']").wait_for()
    walk.shot("models-empty")

    # Deploy: a bad storage URI is refused at its field (as text), then the real one.
    nav(page, "Deploy").click()
    page.get_by_label("Name").fill(model)
    page.get_by_label("Framework").select_option("sklearn")
    page.get_by_label("Storage URI").fill(XSS)
    page.get_by_role("button", name="Deploy", exact=True).click()
    error = page.locator(".field[data-field='storageUri'] .field-error")
    error.wait_for()
    assert "storageUri" in error.inner_text()
    walk.shot("deploy-refused")
    page.get_by_label("Storage URI").fill(f"file://{model_dir}")
    page.get_by_role("button", name="Deploy", exact=True).click()
    page.get_by_role("heading", name=model).wait_for()
    # Ready arrives over /ws: the page is never reloaded (the marker survives).
    page.evaluate("window.__sameDocument = true")
    page.locator(".title-badge [data-phase='Ready']").wait_for(timeout=60_000)
    assert page.evaluate("window.__sameDocument") is True
    page.locator(".replicas", has_text="1 ready").wait_for()
    walk.shot("model-ready")

    # Test a prediction from the prefilled V1 body.
    page.get_by_role("tab", name="Test").click()
    page.get_by_label("Request body").wait_for()
    page.wait_for_function("document.querySelector('textarea[name=body]').value.includes('instances')")
    page.get_by_role("button", name="Send").click()
    result = page.get_by_test_id("predict-result")
    result.wait_for()
    assert '"predictions"' in result.inner_text()
    assert "Answered in" in page.get_by_test_id("predict-latency").inner_text()
    walk.shot("model-test")

    # Logs of the replica.
    page.get_by_role("tab", name="Logs").click()
    page.locator("pre.logs", has_text="ready").wait_for()
    walk.shot("model-logs")

    # Publish with a small minute limit and a description that is markup.
    page.get_by_role("tab", name="Publishing").click()
    page.get_by_label("requestsPerMinute").fill("3")
    page.get_by_label("Metadata (JSON)").fill(json.dumps({"description": XSS}))
    page.get_by_role("button", name="Publish", exact=True).click()
    page.get_by_text("It will not be shown again").wait_for()
    key = page.get_by_test_id("api-key").inner_text().strip()
    assert key.startswith("pk_live_")
    page.get_by_role("button", name="Copy key").click()
    assert page.evaluate("navigator.clipboard.readText()") == key
    curl = page.locator("[data-example='curl'] pre").inner_text()
    assert key in curl
    walk.shot("publish-key")

    # Call the gateway with the copied key: 3 admitted, then the minute's quota refuses; a wrong key 401.
    published = srv.tenant(tenant).get(f"/api/models/{model}/publish").json()
    url = published["externalUrl"]
    assert [gateway_call(url, key) for _ in range(5)] == [200, 200, 200, 429, 429]
    assert gateway_call(url, "pk_live_wrong") == 401

    page.get_by_role("button", name="I have saved the key").click()
    page.locator("[data-metadata='description']", has_text=XSS).wait_for()
    page.get_by_role("button", name="Refresh").first.click()
    page.locator("#chart-requests[data-requests='3']").wait_for()
    page.locator("#chart-refused[data-rate-limited='2'][data-unauthorized='1']").wait_for()
    assert page.locator("#chart-refused rect.bar[data-series='rateLimited']").count() == 1
    assert page.locator("#chart-requests rect.bar").count() == 1
    page.get_by_text("refused by a quota (429): 2").wait_for()
    walk.shot("publish-usage")
    page.get_by_role("button", name="Last day").click()
    page.get_by_text("Requests per hour").wait_for()
    walk.shot("publish-usage-day")

    # Rotate: a new key, shown once; the old one stops working at once.
    page.get_by_role("button", name="Rotate key").click()
    page.locator("dialog").get_by_role("button", name="Rotate key").click()
    page.get_by_text("Your new API key").wait_for()
    new_key = page.get_by_test_id("api-key").inner_text().strip()
    assert new_key.startswith("pk_live_") and new_key != key
    assert new_key in page.locator("[data-example='curl'] pre").inner_text()
    assert gateway_call(url, key) == 401
    assert gateway_call(url, new_key) == 429  # the key is good; this minute's quota is spent
    walk.shot("rotated")
    page.get_by_role("button", name="I have saved the key").click()

    # The list of publications shows the masked key only.
    nav(page, "Publications").click()
    masked = page.locator("tr", has_text=model).locator("td.mono").nth(1)
    masked.wait_for()
    assert new_key not in masked.inner_text() and masked.inner_text().startswith("pk_live_")
    walk.shot("publications")

    # Unpublish, confirmed.
    page.locator("tr", has_text=model).get_by_role("link", name=model).click()
    page.get_by_role("button", name="Unpublish").click()
    page.locator("dialog").get_by_role("button", name="Unpublish").click()
    page.get_by_text(f"{model} is not published").wait_for()
    assert gateway_call(url, new_key) == 404

    # The model list, searched.
    nav(page, "Models").click()
    page.get_by_label("Search models by name").fill(XSS)
    page.get_by_text("No model matches the filter.").wait_for()
    page.get_by_label("Search models by name").fill(model[:4])
    page.locator(f"tr[data-model='{model}'] [data-phase='Ready']").wait_for()
    walk.shot("models")

    # The XSS probes stayed text: no dialog, no request for `x`.
    assert walk.dialogs == []
    assert not [u for u in walk.requests if u.rstrip("/").endswith("/x")]

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in to inferbox").wait_for()
    assert page.evaluate("sessionStorage.length") == 0
