"""Studies: the science run over encodings (Ray Data where it pays), each returning a typed
result with the numbers under their contract names and a `record()` for the recorder. No
MLflow here: models come in loaded, and what a study needs from earlier runs comes in as
arguments."""
