"""The routing-log contract shared by every stage: schema, importers and checks."""

from fusion.log.schema import (
    COLUMNS,
    MODES,
    LogSchemaError,
    candidate_name,
    check_log,
    coerce_log,
    make_query_id,
    read_log,
    write_log,
)

__all__ = [
    "COLUMNS",
    "MODES",
    "LogSchemaError",
    "candidate_name",
    "check_log",
    "coerce_log",
    "make_query_id",
    "read_log",
    "write_log",
]
