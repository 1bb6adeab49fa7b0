"""What the stored data means: cell identity (labels, keys, config columns, which attempt counts)
and the row models every stored table is derived from."""

from trbench.data.cells import (
    MULTI_CONFIG_COLUMNS,
    SINGLE_CONFIG_COLUMNS,
    config_label,
    latest_attempts,
    multi_key,
    parse_config_label,
    single_key,
)
from trbench.data.rows import MaRequestRow, MaRunRow, RequestRow, RunRow, TelemetryRow, arrow_schema

__all__ = ["MULTI_CONFIG_COLUMNS", "SINGLE_CONFIG_COLUMNS", "config_label", "latest_attempts", "multi_key",
           "parse_config_label", "single_key", "RequestRow", "RunRow", "MaRequestRow", "MaRunRow", "TelemetryRow",
           "arrow_schema"]
