"""Serves ClickHouse 26.9 (PyPI chdb-core) over real HTTP and TCP until it is signalled.

Usage: python chdb-server.py DATA_DIR   (run from a directory holding config.xml with the ports)

chdb is ClickHouse as a library; its low-level entry point runs one query in an embedded
server that reads config.xml from the working directory. `SYSTEM START LISTEN` opens the
configured ports (ClickHouse >= 26.5) and a query that never ends keeps the server alive.
SIGTERM ends the process (the data directory survives: MergeTree parts are on disk).
"""
import sys

import chdb._chdb as chdb

# ~31 years of one row per second: the server lives until it is stopped.
chdb.query(
    "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; "
    "SELECT sleepEachRow(1) FROM numbers(1000000000) FORMAT Null SETTINGS max_block_size = 1",
    "TabSeparated",
    path=sys.argv[1],
)
