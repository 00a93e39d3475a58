"""``python -m raas_node.agent.parquet_writer COLUMNS.json OUT.parquet``: a recording to Parquet.

Runs as its own short process so that the agent never holds pyarrow in memory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STRING_COLUMNS = frozenset({"safety_events"})
INTEGER_COLUMNS = frozenset({"step"})


def convert(columns_path: Path, output: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = json.loads(columns_path.read_text())
    arrays = {}
    for name, values in columns.items():
        kind = pa.string() if name in STRING_COLUMNS else pa.int64() if name in INTEGER_COLUMNS else pa.float64()
        arrays[name] = pa.array(values, kind)
    pq.write_table(pa.table(arrays), output, compression="zstd")


if __name__ == "__main__":
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
