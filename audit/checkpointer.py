"""Signs a checkpoint of the audit log every N entries or T seconds, in the database and in files outside it.

The files matter most: a database can be dropped and rebuilt wholesale, triggers and all, but not the checkpoints
a verifier already holds. Each checkpoint is written as ``checkpoint-<size>.note`` and ``latest.note`` (atomically
replaced) in the checkpoint directory; ``mediagate audit verify --checkpoint FILE`` checks the database against
any of them.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from audit.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint
from audit.sql_store import CheckpointRow, SqlAuditStore

log = logging.getLogger(__name__)


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Checkpointer:
    def __init__(
        self, engine: Engine, key: Ed25519PrivateKey, *, directory: Path | None, every_n: int = 1000,
        every_s: float = 60.0,
    ) -> None:
        self.engine = engine
        self.key = key
        self.directory = directory
        self.every_n = every_n
        self.every_s = every_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_time = time.monotonic()
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    def checkpoint_now(self) -> Checkpoint | None:
        """Sign the current tree if it grew since the last checkpoint; return the latest checkpoint either way."""
        with self._lock:
            with Session(self.engine) as session:
                size = SqlAuditStore.size(session)
                latest = SqlAuditStore.latest_checkpoint(session)
                if size == 0:
                    return None
                if latest is not None and latest.size >= size:
                    return _from_row(latest)
                checkpoint = sign_checkpoint(size, SqlAuditStore.root(session, size), self.key)
            try:
                with Session(self.engine) as session:
                    SqlAuditStore.add_checkpoint(session, size=size, root=checkpoint.root, note=checkpoint.note)
                    session.commit()
            except IntegrityError:  # another process checkpointed the same size first: same tree, same root
                log.info("checkpoint at size %d already stored", size)
            if self.directory is not None:
                write_atomically(self.directory / f"checkpoint-{size}.note", checkpoint.note)
                write_atomically(self.directory / "latest.note", checkpoint.note)
            self._last_time = time.monotonic()
            return checkpoint

    def _due(self) -> bool:
        with Session(self.engine) as session:
            size = SqlAuditStore.size(session)
            latest = SqlAuditStore.latest_checkpoint(session)
        last = latest.size if latest else 0
        return size > last and (size - last >= self.every_n or time.monotonic() - self._last_time >= self.every_s)

    def _run(self) -> None:
        interval = min(1.0, self.every_s)
        while not self._stop.wait(interval):
            try:
                if self._due():
                    self.checkpoint_now()
            except Exception:  # noqa: BLE001 - a failed checkpoint is retried on the next tick, and logged
                log.exception("checkpoint failed")

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="audit-checkpointer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None


def _from_row(row: CheckpointRow) -> Checkpoint:
    return parse_checkpoint(row.note)[0]
