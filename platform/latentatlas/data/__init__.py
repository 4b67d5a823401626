"""Dataset sources: one interface (`load_split`), one registry keyed by config names."""

from latentatlas.data.base import Split, load_split, parse_data_address, source_names

__all__ = ["Split", "load_split", "parse_data_address", "source_names"]
