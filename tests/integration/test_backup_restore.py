"""`watchllm backup` / `watchllm restore` against the real Postgres: a backup taken, the
database dropped, restored, and the keys still working at a real gateway through the
official openai SDK; restores that would mix data refused; the embedded stores'
folders copied only while no service has them open."""

from __future__ import annotations

import asyncio
import re
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import numpy as np
import openai
import pytest
import redis
from click.testing import CliRunner, Result

from tests.conftest import unique
from tests.e2e.conftest import gateway_env
from tests.support.processes import ServiceProcess, start_gateway
from tests.support.servers import database_url as with_database
from tests.support.servers import fresh_database
from watchllm_cache.index.edge import EdgeIndex
from watchllm_shared.accounts import migrate as migrations
from watchllm_shared.cli.embedded import EmbeddedRedis
from watchllm_shared.cli.main import cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run(database_url: str, *args: str, ok: bool = True, data_dir: Path | None = None) -> Result:
    env = {"DATABASE_URL": database_url}
    if data_dir is not None:
        env["WATCHLLM_DATA_DIR"] = str(data_dir)
    result = CliRunner().invoke(cli, list(args), env=env)
    assert (result.exit_code == 0) is ok, result.output
    return result


def admin(admin_url: str, statement: str) -> object:
    async def execute() -> object:
        connection = await asyncpg.connect(admin_url)
        try:
            return await connection.fetchval(statement)
        finally:
            await connection.close()

    return asyncio.run(execute())


def chat(gateway: ServiceProcess, key: str, text: str) -> tuple[str, str]:
    """(answer, x-ratelimit-limit-requests) for one completion through the openai SDK."""
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0) as sdk:
        raw = sdk.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )
    return raw.parse().choices[0].message.content or "", raw.headers["x-ratelimit-limit-requests"]


def test_backup_drop_restore_and_the_keys_still_work(
    postgres_admin_url: str,
    redis_url: str,
    fake_provider: ServiceProcess,
    log_dir: Path,
    limiter_library: None,
    tmp_path: Path,
) -> None:
    with fresh_database(postgres_admin_url, "watchllm_backup") as url:
        migrations.upgrade(url)
        project = unique("bk")
        run(url, "projects", "create", project, "--plan", "STARTER")
        key = run(url, "keys", "create", "--project", project, "--quiet").output.strip()
        revoked = run(url, "keys", "create", "--project", project).output
        revoked_key = re.search(r"lgw_\S+", revoked).group(0)  # type: ignore[union-attr]
        run(url, "keys", "revoke", re.search(r"key id: (\S+)", revoked).group(1))  # type: ignore[union-attr]

        archive = tmp_path / "watchllm.dump"
        backup = run(url, "backup", "--output", str(archive)).output
        assert "[1/" in backup and f"backup written: {archive}" in backup
        assert archive.read_bytes()[:5] == b"PGDMP"
        assert stat.S_IMODE(archive.stat().st_mode) == 0o600
        assert "never overwrites" in run(url, "backup", "-o", str(archive), ok=False).output

        name = url.rsplit("/", 1)[1]
        admin(postgres_admin_url, f'DROP DATABASE "{name}" WITH (FORCE)')
        restored = run(url, "restore", str(archive)).output
        assert f"created database {name}" in restored
        assert f"schema at revision {migrations.head_revision()}" in restored
        assert admin(url, "SELECT version_num FROM alembic_version") == migrations.head_revision()
        refused = run(url, "restore", str(archive), ok=False).output
        assert "is not empty" in refused and "--clean" in refused

        stream = f"test.requests.{uuid.uuid4().hex}"
        gateway = start_gateway(gateway_env(fake_provider.url, redis_url, url, stream), log_dir)
        try:
            answer, daily_limit = chat(gateway, key, "after the restore")
            assert answer.startswith("Echo: after the restore")
            assert daily_limit == "10000"  # the STARTER plan came back too
            with pytest.raises(openai.PermissionDeniedError):  # still revoked: 403, not 401
                chat(gateway, revoked_key, "revoked")
            # --clean replaces what is there, in one transaction, with the gateway running.
            assert "schema at revision" in run(url, "restore", str(archive), "--clean").output
            assert chat(gateway, key, "after a clean restore")[0].startswith("Echo: after a")
        finally:
            gateway.stop()


HOLD_CHDB = """
import sys
from chdb import session
s = session.Session(sys.argv[1])
s.query("CREATE DATABASE IF NOT EXISTS w; CREATE TABLE IF NOT EXISTS w.t (x UInt8) "
        "ENGINE = MergeTree ORDER BY x; INSERT INTO w.t VALUES (7)")
print("open", flush=True)
sys.stdin.readline()
s.close()
print("closed", flush=True)
restored = session.Session(sys.stdin.readline().strip())
print(str(restored.query("SELECT sum(x) FROM w.t", "CSV")).strip(), flush=True)
restored.close()
"""


def test_embedded_folders_are_copied_only_while_their_services_are_stopped(
    database_url: str, postgres_admin_url: str, tmp_path: Path
) -> None:
    data_dir, restored_dir = tmp_path / "data", tmp_path / "restored"
    archive = tmp_path / "full.dump"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_CHDB, str(data_dir / "clickhouse")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert holder.stdin is not None and holder.stdout is not None
    valkey = EmbeddedRedis(data_dir / "redis")
    try:
        assert holder.stdout.readline().strip() == "open"
        index = EdgeIndex.open(data_dir / "qdrant-edge", 4)
        index.upsert(str(uuid.uuid4()), np.ones(4, dtype=np.float32), {"project_id": "p"})
        with redis.Redis.from_url(valkey.start()) as client:
            client.set("exact-entry", "kept")
        refused = run(database_url, "backup", "-o", str(archive), "--include-data-dir",
                      data_dir=data_dir, ok=False).output  # fmt: skip
        assert "clickhouse is open in another process: stop analytics (chdb)" in refused
        assert not archive.exists() and not (tmp_path / "full.data.tar.gz").exists()
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "closed"
        refused = run(database_url, "backup", "-o", str(archive), "--include-data-dir",
                      data_dir=data_dir, ok=False).output  # fmt: skip
        assert "stop the cache service (qdrant-edge)" in refused
        index.close()
        refused = run(database_url, "backup", "-o", str(archive), "--include-data-dir",
                      data_dir=data_dir, ok=False).output  # fmt: skip
        assert "stop the embedded Valkey" in refused
        valkey.stop()
        done = run(database_url, "backup", "-o", str(archive), "--include-data-dir",
                   data_dir=data_dir).output  # fmt: skip
        assert "embedded data: " in done and "(clickhouse, qdrant-edge, redis)" in done

        missing = with_database(postgres_admin_url, f"watchllm_restore_{uuid.uuid4().hex[:12]}")
        try:
            run(missing, "restore", str(archive), "--include-data-dir", data_dir=restored_dir)
            admin(postgres_admin_url, f'DROP DATABASE "{missing.rsplit("/", 1)[1]}" WITH (FORCE)')
            again = run(missing, "restore", str(archive), "--include-data-dir",
                        data_dir=restored_dir, ok=False).output  # fmt: skip
            assert "already exist: pass --clean" in again
            assert "does not exist" in run(missing, "keys", "list", ok=False).output
        finally:
            admin(postgres_admin_url, f'DROP DATABASE IF EXISTS "{missing.rsplit("/", 1)[1]}"')
        restored_index = EdgeIndex.open(restored_dir / "qdrant-edge", 4)
        assert restored_index.count() == 1
        restored_index.close()
        with EmbeddedRedis(restored_dir / "redis") as restored_valkey:
            with redis.Redis.from_url(restored_valkey.url) as client:
                assert client.get("exact-entry") == b"kept"
        holder.stdin.write(f"{restored_dir / 'clickhouse'}\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "7"  # the restored chdb opens, row there
    finally:
        valkey.stop()
        holder.stdin.close()
        holder.stdout.close()
        assert holder.wait(timeout=30) == 0
