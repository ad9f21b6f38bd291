"""Every error, of every kind, is `{"error", "details"}` with the right status."""

from __future__ import annotations

from support import RunningServer, start_server


def test_unknown_route_is_404_in_the_error_shape(server: RunningServer) -> None:
    with server.client() as c:
        r = c.get("/api/nothing-here")
    assert r.status_code == 404
    assert r.json() == {"error": "Not found", "details": "No route for GET /api/nothing-here"}


def test_wrong_method_is_405(server: RunningServer) -> None:
    with server.client() as c:
        r = c.put("/api/admin/login", json={})
    assert r.status_code == 405
    assert r.json()["error"] == "Method not allowed"
    assert "PUT" in r.json()["details"]


def test_validation_errors_are_400_never_422(server: RunningServer) -> None:
    with server.admin() as c:
        for body in (b"", b"[", b"null", b'"text"', b"42"):
            r = c.post("/api/admin/tenants", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 400, body
            assert set(r.json()) == {"error", "details"}, body


def test_internal_failures_are_500_without_a_stack_trace(tmp_path) -> None:
    from support import settings_for

    srv = start_server(settings_for(tmp_path))
    try:
        # A route that fails the way a bug would, on the real app with its real handlers.
        async def broken() -> None:
            raise RuntimeError("secret internals at /srv/inferbox/x.py line 12")

        srv._server.config.app.add_api_route("/api/broken", broken)  # type: ignore[union-attr]
        with srv.client() as c:
            r = c.get("/api/broken")
        assert r.status_code == 500
        body = r.json()
        assert body["error"] == "Internal server error"
        assert "Traceback" not in r.text
        assert "secret internals" not in r.text
        assert r.headers["x-request-id"] in body["details"]
    finally:
        srv.stop()
