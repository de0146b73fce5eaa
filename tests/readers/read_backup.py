"""Independent readers for ddb-backup output: DuckDB and pyarrow read the files exactly as stored
(compressed as they are) and print every row as JSON, so the Rust test can compare them with the
items that were backed up.

Input (stdin): a JSON list of {"format": ..., "compression": ..., "path": ..., "columns": [...]}.
Output (stdout): a JSON list with, per file, {"duckdb": rows, "pyarrow": rows}; a row maps column
names to values: decimals and integers as their exact text, binary as base64, missing as absent.
A Parquet file's result also has "schema": per column in file order, its name, its Arrow type as
pyarrow reads it, and its leaf's Parquet physical and logical types.
"""

import base64
import datetime
import decimal
import json
import sys

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq


def plain(value):
    """A reader's value as JSON: exact text for numbers, base64 for bytes, None dropped."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, decimal.Decimal):
        text = format(value, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    raise TypeError(f"unexpected value {value!r}")


def rows_of(dicts):
    return [plain(row) for row in dicts]


def arrow_stream(path, compression):
    codec = {"gzip": "gzip", "zstd": "zstd", "none": None}[compression]
    raw = pa.OSFile(path, "rb")
    return pa.CompressedInputStream(raw, codec) if codec else raw


# Our keys carry `dt=YYYY-MM-DD/`, which DuckDB would add as a hive partition column; the rows
# are compared with the items, so that is turned off here.
def duckdb_rows(con, query, path):
    cursor = con.execute(query, [path])
    names = [d[0] for d in cursor.description]
    return rows_of(dict(zip(names, row)) for row in cursor.fetchall())


def read(spec):
    fmt, compression, path = spec["format"], spec["compression"], spec["path"]
    con = duckdb.connect()
    if fmt == "parquet":
        duck = duckdb_rows(con, "SELECT * FROM read_parquet(?, hive_partitioning = false)", path)
        arrow = rows_of(pq.read_table(path).to_pylist())
        parquet = pq.ParquetFile(path)
        leaves = [parquet.schema.column(i) for i in range(len(parquet.schema))]
        fields = parquet.schema_arrow
        assert len(leaves) == len(fields), "one leaf per column (no nested structs)"
        schema = [
            {
                "name": field.name,
                "arrow": str(field.type),
                "physical": leaf.physical_type,
                "logical": str(leaf.logical_type),
            }
            for field, leaf in zip(fields, leaves)
        ]
        return {"duckdb": duck, "pyarrow": arrow, "schema": schema}
    elif fmt == "csv":
        names = [c["name"] for c in spec["columns"]] + ["_extra"]
        duck = duckdb_rows(
            con,
            # RFC 4180 line ends are CRLF; DuckDB's sniffer cannot guess them when a quoted
            # header field holds a bare newline, so it is told.
            "SELECT * FROM read_csv(?, hive_partitioning = false, header = true, all_varchar = true, delim = ',', "
            "quote = '\"', escape = '\"', new_line = '\\r\\n', compression = '"
            + compression
            + "')",
            path,
        )
        table = pacsv.read_csv(
            arrow_stream(path, compression),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        arrow = rows_of(table.to_pylist())
    else:
        duck = duckdb_rows(
            con,
            "SELECT * FROM read_json(?, hive_partitioning = false, format = 'newline_delimited', "
            "compression = '"
            + compression + "')",
            path,
        )
        try:
            arrow = rows_of(pajson.read_json(arrow_stream(path, compression)).to_pylist())
        except pa.ArrowInvalid as e:
            # pyarrow's JSON reader needs every array to hold one type; DynamoDB lists mix
            # types, which plain JSON lines keep as they are. Reported, not hidden.
            if fmt != "json":
                raise
            arrow = {"error": str(e)}
    return {"duckdb": duck, "pyarrow": arrow}


def main():
    specs = json.load(sys.stdin)
    json.dump([read(spec) for spec in specs], sys.stdout)


if __name__ == "__main__":
    main()
