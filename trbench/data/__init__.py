"""What the stored data means: cell identity (labels, keys, config columns, which attempt counts)."""

from trbench.data.cells import (
    MULTI_CONFIG_COLUMNS,
    SINGLE_CONFIG_COLUMNS,
    config_label,
    latest_attempts,
    multi_key,
    parse_config_label,
    single_key,
)

__all__ = ["MULTI_CONFIG_COLUMNS", "SINGLE_CONFIG_COLUMNS", "config_label", "latest_attempts", "multi_key",
           "parse_config_label", "single_key"]
