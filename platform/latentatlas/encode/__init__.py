"""Ray Data batch inference of encoders into Parquet encodings, and reading them back."""

from latentatlas.encode.store import Encoding, EncodingMeta, open_encoding

__all__ = ["Encoding", "EncodingMeta", "open_encoding"]
