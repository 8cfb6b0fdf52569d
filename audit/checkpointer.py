"""Signs a checkpoint of the audit log every N entries or T seconds, in the database and in files outside it.

The files matter most: a database can be dropped and rebuilt wholesale, triggers and all, but not the checkpoints
a verifier already holds. Each checkpoint is written as ``checkpoint-<size>.note`` and ``latest.note`` (atomically
replaced) in the checkpoint directory; ``mediagate audit verify --checkpoint FILE`` checks the database against
any of them.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from audit.background import Periodic, write_atomically
from audit.checkpoint import Checkpoint, parse_checkpoint, sign_checkpoint
from audit.sql_store import CheckpointRow, SqlAuditStore

log = logging.getLogger(__name__)


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
        self._last_time = time.monotonic()
        self._periodic = Periodic("audit-checkpointer", min(1.0, every_s), self._tick)
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
                write_atomically(self.directory / f"checkpoint-{size}.note", checkpoint.note.encode())
                write_atomically(self.directory / "latest.note", checkpoint.note.encode())
            self._last_time = time.monotonic()
            return checkpoint

    def covering(self, size: int) -> Checkpoint | None:
        """The latest stored checkpoint if it covers ``size`` entries; otherwise a new one (signed now). Proofs use
        this, so that serving them does not sign a checkpoint per request while the stored ones still cover them."""
        with Session(self.engine) as session:
            latest = SqlAuditStore.latest_checkpoint(session)
        if latest is not None and latest.size >= size:
            return _from_row(latest)
        return self.checkpoint_now()

    def _due(self) -> bool:
        with Session(self.engine) as session:
            size = SqlAuditStore.size(session)
            latest = SqlAuditStore.latest_checkpoint(session)
        last = latest.size if latest else 0
        return size > last and (size - last >= self.every_n or time.monotonic() - self._last_time >= self.every_s)

    def _tick(self) -> None:
        if self._due():
            self.checkpoint_now()

    def start(self) -> None:
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()


def _from_row(row: CheckpointRow) -> Checkpoint:
    return parse_checkpoint(row.note)[0]
