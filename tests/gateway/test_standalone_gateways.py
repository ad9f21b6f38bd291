"""Standalone gateways (`inferbox gateway`): several share the store and, through Redis, one budget."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import psycopg
import pytest
from support import IRIS_ROW, POSTGRES_URL, REDIS_URL, deploy, gateway_process, publish, wait_for


def test_two_gateways_sharing_redis_admit_exactly_n(make_server, sklearn_dir: Path) -> None:
    srv = make_server(redis_url=REDIS_URL)
    deploy(srv, sklearn_dir)
    limit = 40
    key = publish(
        srv, {"rateLimiting": {"requestsPerMinute": limit, "requestsPerHour": 1000, "burstLimit": 1000}}
    )["apiKey"]
    shared = {"REDIS_URL": REDIS_URL, "INFERBOX_REDIS_PREFIX": srv.settings.redis_prefix}
    with gateway_process(srv, **shared) as (first, _), gateway_process(srv, **shared) as (second, _):

        async def storm() -> list[int]:
            # 64 concurrent callers share 3N calls, alternating between the two gateways.
            gate = asyncio.Semaphore(64)
            async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=64)) as client:

                async def one(i: int) -> int:
                    base = first if i % 2 == 0 else second
                    async with gate:
                        r = await client.post(
                            f"{base}/models/my-model/predict",
                            json={"instances": [IRIS_ROW]},
                            headers={"X-API-Key": key},
                        )
                    return r.status_code

                return list(await asyncio.gather(*(one(i) for i in range(3 * limit))))

        codes = asyncio.run(storm())
    assert codes.count(200) == limit
    assert codes.count(429) == 2 * limit
    with srv.tenant("tenant-a") as c:
        usage = wait_for(
            lambda: (
                (u := c.get("/api/models/my-model/publish").json()["usage"])["totalRequests"] == limit and u
            ),
            timeout=10,
        )
    assert usage["totalRequests"] == limit


def test_a_standalone_gateway_sees_changes_made_by_the_control_plane(make_server, sklearn_dir: Path) -> None:
    srv = make_server()
    deploy(srv, sklearn_dir)
    key = publish(srv)["apiKey"]
    with gateway_process(srv) as (url, _):
        r = httpx.post(
            f"{url}/models/my-model/predict", json={"instances": [IRIS_ROW]}, headers={"X-API-Key": key}
        )
        assert r.status_code == 200
        assert r.json() == {"predictions": [2]}
        with srv.tenant("tenant-a") as c:
            assert c.delete("/api/models/my-model/publish").status_code == 200
        wait_for(
            lambda: (
                httpx.post(f"{url}/models/my-model/predict", json={}, headers={"X-API-Key": key}).status_code
                == 404
            ),
            timeout=10,
        )


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_no_plaintext_key_in_the_store_or_the_logs(
    make_server, sklearn_dir: Path, store: str, request
) -> None:
    database_url = None
    schema = None
    if store == "postgresql":
        from support import postgres_url

        schema = request.getfixturevalue("postgres_schemas")()
        database_url = postgres_url(schema)
    srv = make_server(database_url)
    deploy(srv, sklearn_dir)
    key = publish(srv)["apiKey"]
    with gateway_process(srv, LOG_LEVEL="debug") as (url, proc):
        for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {key}"}, {"X-API-Key": key + "x"}):
            httpx.post(f"{url}/models/my-model/predict", json={"instances": [IRIS_ROW]}, headers=headers)
        with srv.tenant("tenant-a") as c:
            rotated = c.post("/api/models/my-model/publish/rotate-key").json()["newApiKey"]
            c.post("/api/validate-api-key", json={"apiKey": rotated})
    _, gateway_log = proc.communicate()
    secrets_ = (key, rotated, key[len("pk_live_") :], rotated[len("pk_live_") :])
    service_log = "\n".join(e["message"] for e in srv.platform.recent_logs.tail(100000))
    for secret in secrets_:
        assert secret not in gateway_log
        assert secret not in service_log
    if store == "sqlite":
        db = Path(srv.settings.effective_database_url.split(":///", 1)[1])
        blob = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
        data_dir = b"".join(p.read_bytes() for p in srv.settings.data_dir.rglob("*") if p.is_file())
        for secret in secrets_:
            assert secret.encode() not in blob
            assert secret.encode() not in data_dir
    else:
        with psycopg.connect(POSTGRES_URL) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,)
                )
            ]
            assert "api_keys" in tables
            dump = "".join(
                str(row)
                for table in tables
                for row in conn.execute(f'SELECT row_to_json(t)::text FROM "{schema}"."{table}" t')
            )
        for secret in secrets_:
            assert secret not in dump
