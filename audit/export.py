"""``mediagate audit export``: every entry, in order, as JSON lines or Parquet (for auditors' own tools)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

COLUMNS = ("seq", "id", "ts", "tenant", "kind", "payload", "prev_hash", "hash")


def _rows(engine: Engine, batch: int = 5000) -> Any:
    with engine.connect() as conn:
        yield from conn.execution_options(yield_per=batch).execute(
            text(f"SELECT {', '.join(COLUMNS)} FROM audit_entries ORDER BY seq")
        )


def export_log(engine: Engine, out: Path, fmt: str) -> int:
    """Write the log to ``out``; the payload stays the exact canonical text that was hashed. Returns the count."""
    if fmt == "jsonl":
        count = 0
        with out.open("w") as fh:
            for row in _rows(engine):
                record = dict(zip(COLUMNS, row, strict=True))
                record["payload"] = json.loads(record["payload"])
                fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
                count += 1
        return count
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([("seq", pa.int64()), *[(c, pa.string()) for c in COLUMNS[1:]]])
        count = 0
        with pq.ParquetWriter(out, schema) as writer:
            chunk: list[tuple[Any, ...]] = []
            for row in _rows(engine):
                chunk.append(tuple(row))
                if len(chunk) == 5000:
                    writer.write_table(pa.Table.from_pylist([dict(zip(COLUMNS, r, strict=True)) for r in chunk],
                                                            schema=schema))
                    count += len(chunk)
                    chunk = []
            if chunk:
                writer.write_table(pa.Table.from_pylist([dict(zip(COLUMNS, r, strict=True)) for r in chunk],
                                                        schema=schema))
                count += len(chunk)
        return count
    raise ValueError(f"unknown export format {fmt!r}; use jsonl or parquet")
