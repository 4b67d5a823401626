"""What a study hands to the recorder: plain data, no MLflow (analysis/ builds these)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class DatasetRecord:
    """Data a run read, as an MLflow dataset input: `name` (dataset:split), a digest of
    what was read, where from, and the role (`training`, `validation`, `evaluation`)."""

    name: str
    digest: str
    source: str
    context: str
    rows: int
    shape: tuple


@dataclass
class Record:
    """What a study measured, in the form a run holds. Studies build one; the Recorder writes
    it. Figures are makers, drawn only when recorded (pyplot figures cost memory)."""

    kind: str  # the `latentatlas.kind` tag other tools search by
    name: str  # the run name
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)  # contract names (DESIGN.md) -> numbers
    series: dict = field(default_factory=dict)  # metric name -> [(step, number), ...]
    tags: dict = field(default_factory=dict)
    tables: dict = field(default_factory=dict)  # file.json -> {column: values}
    dicts: dict = field(default_factory=dict)  # file.json -> a JSON-able dict
    figures: dict = field(default_factory=dict)  # file.png -> () -> matplotlib Figure
    images: dict = field(default_factory=dict)  # name -> (H, W[, C]) array in [0, 1]
    files: dict = field(default_factory=dict)  # artifact path -> writer(local Path)
    datasets: list = field(default_factory=list)  # DatasetRecords: the data it read
