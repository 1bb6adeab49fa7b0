"""`trbench export`: one stored table of a TR as CSV or JSON Lines, for a spreadsheet or a notebook.

A table is read as every reader of it does (store.read_arrow: today's schema, old files migrated) and
written with its schema's columns in their order (the partition folder's model_slug is left out: the
model column says it). The rules, one each:

  CSV    one header line, then one line per row; a null is an empty cell; a timestamp is ISO 8601 in
         UTC (2025-01-01T00:00:00.000000Z); a list or struct column (error_kinds, chunk_offsets_ms,
         ref_id ...) is JSON text in its cell (["connect","http_5xx"], [{"kind":"http_5xx","count":3}]),
         so that a list of structs reads back whole and a ';' inside a value cannot split it
  JSONL  one JSON object per line, every column a key; a null is null, a list a JSON array, a struct an
         object, a timestamp an RFC 3339 string, a NaN null (JSON has no NaN)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from trbench.data import remote, store
from trbench.data.atomic import write_atomic

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
TABLES: tuple[str, ...] = tuple(store.SCHEMAS)  # every table read_arrow reads
_BATCH_ROWS = 10_000  # rows converted at a time: a million-request table is written without a second copy


class ExportError(ValueError):
    """Bad input: the message names the field and the fix."""


def tables_with_rows(root: Path) -> list[str]:
    """The tables of TABLES this TR has files of."""
    return [t for t in TABLES if any((root / t).glob("model_slug=*/*.parquet"))]


def read_table(root: Path, table: str) -> pa.Table:
    """The stored table, its schema's columns only, in their order."""
    if table not in TABLES:
        raise ExportError(f"--table {table!r}: no such table; fix: one of {', '.join(TABLES)}")
    if table not in tables_with_rows(root):
        have = tables_with_rows(root)
        fix = f"one of the tables it has: {', '.join(have)}" if have else "check --output-dir and the tr_id"
        raise ExportError(f"--table {table}: TR {root.name!r} has no {table} data under {remote.where(root)}; fix: {fix}")
    return store.read_arrow(root, table, store.table_schema(table).names)


def _nested(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_struct(t) or pa.types.is_map(t)


def _json_cells(column: pa.ChunkedArray) -> pa.Array:
    """A nested column as JSON text per cell (null stays null)."""
    return pa.array([None if v is None else orjson.dumps(v, option=orjson.OPT_SERIALIZE_NUMPY).decode()
                     for v in column.to_pylist()], pa.string())


def _iso(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A UTC timestamp column as ISO 8601 text (%S carries the microseconds)."""
    return pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ")


def csv_table(table: pa.Table) -> pa.Table:
    """The table as CSV cells: nested columns as JSON text, timestamps as ISO 8601."""
    for i, field in enumerate(table.schema):
        if _nested(field.type):
            table = table.set_column(i, field.name, _json_cells(table.column(i)))
        elif pa.types.is_timestamp(field.type):
            table = table.set_column(i, field.name, _iso(table.column(i)))
    return table


def _write_csv(table: pa.Table, out: IO[bytes]) -> None:
    options = pacsv.WriteOptions(include_header=True, quoting_style="needed")
    with pacsv.CSVWriter(out, csv_table(table.slice(0, 0)).schema, write_options=options) as writer:
        for start in range(0, table.num_rows, _BATCH_ROWS):
            writer.write_table(csv_table(table.slice(start, _BATCH_ROWS)))


def _write_jsonl(table: pa.Table, out: IO[bytes]) -> None:
    for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
        out.write(b"".join(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z)
                           for row in batch.to_pylist()))


def export_table(root: Path, table: str, fmt: str, output: Path | None = None) -> tuple[Path | None, pa.Table]:
    """Write one stored table as CSV or JSON Lines to `output` (<tr_root>/exports/<table>.<fmt> when None; '-'
    is stdout).
    Returns (the path written, None for stdout; the table). Raises ExportError on bad input."""
    if fmt not in FORMATS:
        raise ExportError(f"--format {fmt!r}: no such format; fix: one of {', '.join(FORMATS)}")
    data = read_table(root, table)
    write = _write_csv if fmt == "csv" else _write_jsonl
    if output is not None and str(output) == "-":
        write(data, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return None, data
    path = Path(output) if output is not None else root / "exports" / f"{table}.{fmt}"

    def write_file(tmp: Path) -> None:
        with tmp.open("wb") as out:
            write(data, out)

    try:
        write_atomic(path, write_file)
    except OSError as err:
        raise ExportError(f"--output {path}: cannot write it ({err.strerror or err}); fix: give a writable path")
    return path, data
