"""Copies of the embedded stores' folders: ``--include-data-dir`` of backup and restore.

In embedded mode analytics keeps ClickHouse (chdb) in ``<data dir>/clickhouse``, the
cache service keeps its semantic index (qdrant-edge) in ``<data dir>/qdrant-edge``
(``qdrant-edge-<i>`` for extra replicas), and ``watchllm up`` runs Valkey with its
append-only file in ``<data dir>/redis`` (the exact-cache entries the index points to,
the limiter's windows, events in flight). Each engine writes several files per change,
so a copy is consistent only while no process has the folder open. Each one locks its
folder with ``flock`` (chdb on ``clickhouse/status``, qdrant-edge on its ``wal``
directory, ``watchllm up`` on ``redis/.lock``), so we take the *same* lock: if a
service holds it, the copy is refused and says which service to stop; once we hold
it, a service starting meanwhile fails at open ("Cannot lock file …/status", a locked
WAL, "in use by another process") instead of writing under the copy.

The copy is one ``.tar.gz`` next to the Postgres archive. Restoring it never deletes:
a folder already there is refused unless ``clean``, and then renamed to
``<name>.replaced-<UTC time>`` before the copy is unpacked (delete it once satisfied).

A Redis, ClickHouse or Qdrant *server* is backed up with its own tools (README,
Operations); this covers the embedded ones only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

ENGINES = {
    "clickhouse": "analytics (chdb)",
    "qdrant-edge": "the cache service (qdrant-edge)",
    "redis": "the embedded Valkey (its `watchllm up`)",
}
# The file each engine flocks while it has the folder open, and whether we may create
# it when missing (chdb removes its status file at a clean close; a WAL is a folder).
_LOCK_FILE = {"clickhouse": ("status", True), "qdrant-edge": ("wal", False),
              "redis": (".lock", True)}  # fmt: skip
_REPLICA = re.compile(r"qdrant-edge-\d+")
_NOT_COPIED = {"clickhouse/status", "redis/.lock"}


class DataDirError(RuntimeError):
    """A folder is in use, missing, or would be overwritten; the message says what to do."""


def engine_of(folder: Path) -> str:
    return "qdrant-edge" if _REPLICA.fullmatch(folder.name) else folder.name


def store_folders(data_dir: Path) -> list[Path]:
    """The embedded stores' folders present under ``data_dir``, in a stable order."""
    folders = [data_dir / "clickhouse", data_dir / "qdrant-edge", data_dir / "redis"]
    folders += sorted(p for p in data_dir.glob("qdrant-edge-*") if _REPLICA.fullmatch(p.name))
    return [f for f in folders if f.is_dir()]


@contextlib.contextmanager
def engine_lock(folder: Path) -> Iterator[None]:
    """Hold the lock the folder's engine takes when it opens it; refuse if it is taken."""
    engine = engine_of(folder)
    name, may_create = _LOCK_FILE[engine]
    path = folder / name
    created = may_create and not path.exists()
    if not may_create and not path.exists():
        yield  # no shard yet: nothing that could be open
        return
    fd = os.open(path, os.O_RDONLY | (os.O_CREAT if created else 0), 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataDirError(
                f"{folder} is open in another process: stop {ENGINES[engine]} first "
                "(Ctrl-C the `watchllm up` that runs it), then run this again"
            ) from None
        yield
    finally:
        os.close(fd)
        if created:
            path.unlink(missing_ok=True)


def data_archive_path(postgres_archive: Path) -> Path:
    """``backup.dump`` → ``backup.data.tar.gz``."""
    return postgres_archive.with_name(postgres_archive.stem + ".data.tar.gz")


def backup_data_dir(data_dir: Path, output: Path) -> list[Path]:
    """Write the stores' folders to ``output`` while holding their locks; returns them."""
    folders = store_folders(data_dir)
    if not folders:
        raise DataDirError(
            f"no embedded store folders (clickhouse, qdrant-edge, redis) in {data_dir}"
        )
    partial = output.with_name(output.name + ".partial")
    with contextlib.ExitStack() as locks:
        for folder in folders:
            locks.enter_context(engine_lock(folder))
        try:
            with tarfile.open(partial, "w:gz") as archive:
                for folder in folders:
                    archive.add(folder, arcname=folder.name, filter=_skip_lock_file)
            partial.chmod(0o600)
            partial.replace(output)
        finally:
            partial.unlink(missing_ok=True)
    return folders


def _skip_lock_file(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if member.name in _NOT_COPIED else member


def restore_data_dir(archive_path: Path, data_dir: Path, clean: bool) -> list[str]:
    """Unpack the folders into ``data_dir`` (see the module docstring); returns their names."""
    if not archive_path.is_file():
        raise DataDirError(f"no data archive at {archive_path} (made by `backup "
                           "--include-data-dir`)")  # fmt: skip
    with tarfile.open(archive_path, "r:gz") as archive:
        names = sorted({Path(m.name).parts[0] for m in archive.getmembers()})
        unknown = [n for n in names if n not in ENGINES and not _REPLICA.fullmatch(n)]
        if unknown:
            raise DataDirError(f"{archive_path} holds unexpected folders: {unknown}")
        data_dir.mkdir(parents=True, exist_ok=True)
        present = [data_dir / n for n in names if (data_dir / n).exists()]
        if present and not clean:
            raise DataDirError(
                f"{', '.join(map(str, present))} already exist: pass --clean to set them "
                "aside (renamed, not deleted) and restore the copy"
            )
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        with contextlib.ExitStack() as locks:
            for folder in present:
                locks.enter_context(engine_lock(folder))
            for folder in present:
                folder.rename(folder.with_name(f"{folder.name}.replaced-{stamp}"))
        archive.extractall(data_dir, filter="data")
    return names
