"""Who is calling from where: the login lock-out no stranger can turn against the admin, forwarded
headers believed only from configured proxies (on the API and the gateway), and a flood of wrong keys
slowed down per address. Callers come from real, distinct loopback addresses (127.0.0.x)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support import ADMIN_PASSWORD, IRIS_ROW, RunningServer, client_from, deploy, publish

from inferbox.api.auth import PAIR_LOCKOUT, USER_CEILING

WRONG = {"username": "admin", "password": "wrong"}
RIGHT = {"username": "admin", "password": ADMIN_PASSWORD}


def login(srv: RunningServer, address: str, body: dict[str, str], **headers: str) -> int:
    with client_from(srv.base_url, address, **headers) as c:
        return c.post("/api/admin/login", json=body).status_code


def test_failures_from_one_address_do_not_lock_the_admin_out_elsewhere(make_server) -> None:
    srv = make_server()
    attempts = PAIR_LOCKOUT[0].amount
    assert [login(srv, "127.0.0.2", WRONG) for _ in range(attempts)] == [401] * attempts
    assert login(srv, "127.0.0.2", WRONG) == 429
    # The guesser's own address waits, even with the right password ...
    assert login(srv, "127.0.0.2", RIGHT) == 429
    # ... the admin elsewhere does not.
    assert login(srv, "127.0.0.3", RIGHT) == 200
    assert login(srv, "127.0.0.3", WRONG) == 401


def test_a_guesser_on_many_addresses_meets_a_ceiling_the_admin_passes(make_server) -> None:
    srv = make_server()
    assert login(srv, "127.0.0.9", RIGHT) == 200  # where the admin usually works
    ceiling = USER_CEILING[0].amount
    per_address = PAIR_LOCKOUT[0].amount
    addresses = [f"127.0.1.{i}" for i in range(1, ceiling // per_address + 2)]

    def guess(address: str) -> list[int]:
        return [login(srv, address, WRONG) for _ in range(per_address)]

    with ThreadPoolExecutor(8) as pool:
        codes = [c for batch in pool.map(guess, addresses) for c in batch]
    # The ceiling counts attempts (the admin's own login above was one of them).
    assert codes.count(401) == ceiling - 1 and 429 in codes
    # Past the ceiling, a new address is refused even with the right password; the admin's is not.
    assert login(srv, "127.0.0.50", RIGHT) == 429
    assert login(srv, "127.0.0.9", RIGHT) == 200


def test_forwarded_for_is_not_believed_by_default(make_server, sklearn_dir: Path) -> None:
    srv = make_server(rate_limit_burst=5, rate_limit_requests=1000)
    spoofed = [f"203.0.113.{i}" for i in range(1, 21)]
    codes = []
    started = time.monotonic()
    for address in spoofed:
        with client_from(srv.base_url, "127.0.0.4", **{"X-Forwarded-For": address}) as c:
            codes.append(c.post("/api/validate-api-key", json={"apiKey": "pk_live_x"}).status_code)
    elapsed = time.monotonic() - started
    # One caller, one budget (5 a second), whatever the header says: a busy machine may let a window
    # pass during the calls, so the bound counts the windows they spanned.
    assert codes[:5] == [401] * 5 and 429 in codes[5:]
    assert codes.count(401) <= 5 * (int(elapsed) + 2), (codes, elapsed)
    assert login(srv, "127.0.0.14", WRONG, **{"X-Forwarded-For": "198.51.100.7"}) == 401
    srv.platform.audit.flush()
    sources = {e.source_ip for e in srv.platform.audit.query(limit=100, action="auth.login")}
    assert sources == {"127.0.0.14"}


def test_forwarded_for_is_believed_from_a_configured_proxy(make_server, sklearn_dir: Path) -> None:
    srv = make_server(forwarded_allow_ips=("127.0.0.5",))
    assert login(srv, "127.0.0.5", WRONG, **{"X-Forwarded-For": "198.51.100.7"}) == 401
    # The same header from an address that is not the proxy is ignored.
    assert login(srv, "127.0.0.6", WRONG, **{"X-Forwarded-For": "198.51.100.8"}) == 401
    srv.platform.audit.flush()
    sources = {e.source_ip for e in srv.platform.audit.query(limit=100, action="auth.login")}
    assert sources == {"198.51.100.7", "127.0.0.6"}

    # The gateway believes the proxy too: ten refused keys per second per (real) caller.
    deploy(srv, sklearn_dir)
    publish(srv)
    codes = []
    for i in range(12):
        with client_from(srv.gateway_url, "127.0.0.5", **{"X-Forwarded-For": f"198.51.100.{i + 10}"}) as c:
            codes.append(c.post("/models/my-model/predict", json={"instances": [IRIS_ROW]}).status_code)
    assert codes == [401] * 12


@pytest.mark.parametrize("trusted", [False, True])
def test_the_gateway_slows_down_an_address_that_sends_wrong_keys(
    make_server, sklearn_dir: Path, trusted: bool
) -> None:
    srv = make_server(forwarded_allow_ips=("127.0.0.7",) if trusted else ())
    deploy(srv, sklearn_dir)
    key = publish(srv)["apiKey"]
    wrong = [f"pk_live_{i:043d}" for i in range(30)]
    with client_from(srv.gateway_url, "127.0.0.7", **{"X-Forwarded-For": "198.51.100.99"}) as c:
        started = time.monotonic()
        codes = [
            c.post("/models/my-model/predict", json={"instances": [IRIS_ROW]}, headers={"X-API-Key": k})
            for k in wrong
        ]
        elapsed = time.monotonic() - started
        statuses = [r.status_code for r in codes]
        # Ten refusals a second: the rest are 429 (on a busy machine the calls may span another
        # window, which allows ten more).
        assert statuses[:10] == [401] * 10 and 429 in statuses[10:]
        assert statuses.count(401) <= 10 * (int(elapsed) + 2), (statuses, elapsed)
        assert set(statuses) == {401, 429}
        refused = next(r for r in reversed(codes) if r.status_code == 429)
        assert refused.json()["error"] == "Too many invalid credentials"
        assert int(refused.headers["retry-after"]) >= 1
        # A valid key from the same address still works: the flood cannot lock its neighbours out.
        ok = c.post("/models/my-model/predict", json={"instances": [IRIS_ROW]}, headers={"X-API-Key": key})
        assert ok.status_code == 200
    # Another caller is not slowed down by this one.
    with client_from(srv.gateway_url, "127.0.0.8") as other:
        r = other.post(
            "/models/my-model/predict", json={"instances": [IRIS_ROW]}, headers={"X-API-Key": wrong[0]}
        )
    assert r.status_code == 401
