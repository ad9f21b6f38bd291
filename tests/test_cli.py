"""The `inferbox` command, run as a user runs it: real processes, real ports."""

from __future__ import annotations

import re
import signal
import stat
import subprocess
from pathlib import Path

import httpx
import jwt
from support import INFERBOX, base_env, free_port, serving, wait_for


def run(args: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*INFERBOX, *args], env=env, capture_output=True, text=True, timeout=60, **kwargs)


def test_version() -> None:
    r = subprocess.run([*INFERBOX, "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert re.fullmatch(r"inferbox \d+\.\d+\.\d+\S*\n", r.stdout)


def test_bad_settings_stop_start_up_with_one_line(tmp_path: Path) -> None:
    for name, value in [
        ("PORT", "eighty"),
        ("LOG_LEVEL", "loud"),
        ("DATABASE_URL", "mysql://x"),
        ("INFERBOX_RUNTIME", "nomad"),
        ("RATE_LIMIT_REQUESTS", "0"),
        ("JWT_SECRET", "short"),
    ]:
        r = run(["serve"], base_env(tmp_path, **{name: value}))
        assert r.returncode == 2, name
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, (name, r.stderr)
        assert name in lines[0]
        assert "Traceback" not in r.stderr


def test_token_is_signed_with_the_configured_secret(tmp_path: Path) -> None:
    secret = "a-configured-secret-of-32-chars!!"
    r = run(["token", "--tenant", "tenant-a", "--ttl", "120"], base_env(tmp_path, JWT_SECRET=secret))
    assert r.returncode == 0, r.stderr
    claims = jwt.decode(r.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["tenant"] == "tenant-a"
    assert claims["exp"] - claims["iat"] == 120


def test_without_jwt_secret_one_is_kept_private_in_the_data_dir(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    first = run(["token", "--tenant", "t"], env).stdout.strip()
    secret_file = tmp_path / "data" / "jwt_secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    secret = secret_file.read_text().strip()
    assert jwt.decode(first, secret, algorithms=["HS256"])["tenant"] == "t"
    second = run(["token", "--tenant", "t"], env).stdout.strip()
    assert jwt.decode(second, secret, algorithms=["HS256"])["tenant"] == "t"


def test_tenant_commands(tmp_path: Path) -> None:
    env = base_env(tmp_path)
    assert run(["tenant", "create", "tenant-a"], env).returncode == 0
    assert run(["tenant", "create", "tenant-b"], env).returncode == 0
    dup = run(["tenant", "create", "tenant-a"], env)
    assert dup.returncode == 1
    assert "already exists" in dup.stderr
    bad = run(["tenant", "create", "Not_A_Label"], env)
    assert bad.returncode == 2
    listed = run(["tenant", "list"], env).stdout.splitlines()
    assert [line.split("\t")[0] for line in listed] == ["tenant-a", "tenant-b"]
    assert run(["tenant", "delete", "tenant-a"], env).returncode == 0
    assert run(["tenant", "delete", "tenant-a"], env).returncode == 1
    assert [line.split("\t")[0] for line in run(["tenant", "list"], env).stdout.splitlines()] == ["tenant-b"]


def test_serve_generates_the_admin_password_once_and_keeps_state_across_restarts(tmp_path: Path) -> None:
    env = base_env(tmp_path, LOG_LEVEL="debug")
    with serving(env) as (base, proc):
        login_token = None
        # The generated password is printed on stdout; read until it appears.
        assert proc.stdout is not None
        printed = proc.stdout.readline() + proc.stdout.readline()
        match = re.search(r"generated admin password for 'admin': (\S+)", printed)
        assert match, printed
        password = match.group(1)
        r = httpx.post(f"{base}/api/admin/login", json={"username": "admin", "password": password})
        assert r.status_code == 200
        login_token = r.json()["token"]
        headers = {"Authorization": f"Bearer {login_token}"}
        assert (
            httpx.post(f"{base}/api/admin/tenants", json={"name": "tenant-a"}, headers=headers).status_code
            == 201
        )
        # A token from `inferbox token` (same data dir, so the same kept secret) lists the tenant's models.
        user_token = run(["token", "--tenant", "tenant-a"], env).stdout.strip()
        listed = httpx.get(f"{base}/api/models", headers={"Authorization": f"Bearer {user_token}"})
        assert listed.status_code == 200
        assert listed.json() == {"models": []}
        wrong = httpx.post(f"{base}/api/admin/login", json={"username": "admin", "password": "hunter2-wrong"})
        assert wrong.status_code == 401
    out, err = proc.communicate()
    log_text = err + out
    # No secret in the logs: not the password, not the token, not the wrong guess.
    assert password not in err
    assert login_token not in log_text
    assert login_token.split(".")[2] not in log_text
    assert "hunter2-wrong" not in log_text
    assert "POST /api/admin/login 200" in err
    db = (tmp_path / "data" / "inferbox.db").read_bytes()
    assert password.encode() not in db

    with serving(env) as (base, proc):
        r = httpx.post(f"{base}/api/admin/login", json={"username": "admin", "password": password})
        assert r.status_code == 200
        headers = {"Authorization": f"Bearer {r.json()['token']}"}
        tenants = httpx.get(f"{base}/api/admin/tenants", headers=headers).json()["tenants"]
        assert [t["name"] for t in tenants] == ["tenant-a"]
    out, _ = proc.communicate()
    assert "generated admin password" not in out
    # SIGTERM is a clean stop: exit code 0, not death by the signal.
    assert proc.returncode == 0


def test_json_logs_when_log_level_asks(tmp_path: Path) -> None:
    import json

    env = base_env(tmp_path, LOG_LEVEL="info,json", ADMIN_PASSWORD="password")
    with serving(env) as (base, proc):
        token = httpx.post(
            f"{base}/api/admin/login", json={"username": "admin", "password": "password"}
        ).json()["token"]
        httpx.get(f"{base}/api/tenant?token={token}", headers={"Authorization": f"Bearer {token}"})
    _, err = proc.communicate()
    entries = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert entries, err
    assert all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    access = [e for e in entries if e["logger"] == "inferbox.access"]
    assert any("/api/admin/login" in e["message"] for e in access)
    assert all("requestId" in e for e in access)
    assert token not in err


def test_model_server_command_serves_a_model(sklearn_dir: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            *INFERBOX,
            "model-server",
            "--name",
            "iris",
            "--framework",
            "sklearn",
            "--model-dir",
            str(sklearn_dir),
            "--port",
            str(port),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                return httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=30)
        r = httpx.post(f"{url}/v1/models/iris:predict", json={"instances": [[6.3, 3.3, 6.0, 2.5]]})
        assert r.json() == {"predictions": [2]}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
