"""What the platform reads back verifies itself. Real encodings written by `encode` (in this
process, and by Ray Data into two shards), real logged models and real training checkpoints
are damaged the way disks, interrupted copies and diverged models damage them; each damage
is one `error:` line naming the file and what is wrong, exit code 2, and no MLflow run."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import make_idx_dataset, mlflow_state_restored, run_cli_module, use_store

from jobs import relocate as relocate_verb
from jobs import stats as stats_verb
from jobs import verify as verify_verb
from latentatlas import model_store, tracking
from latentatlas.config import DenseVAEConfig
from latentatlas.encode import open_encoding
from latentatlas.encode.manifest import MANIFEST_FILE
from latentatlas.encode.pipeline import encode
from latentatlas.encode.store import WARNED
from latentatlas.errors import UserError
from latentatlas.models import build_model
from latentatlas.record import Record

EXPERIMENT = "verify-test"


def log_vae(latent_dim: int, seed: int = 0, overflow: bool = False) -> str:
    cfg = DenseVAEConfig(hidden=[16], latent_dim=latent_dim)
    torch.manual_seed(seed)
    model = build_model(cfg, (1, 28, 28))
    with torch.no_grad():
        model.mu.weight *= 30  # spread the codes, as in a trained VAE
        if overflow:  # finite weights whose codes are not: float32 overflows to inf
            model.mu.weight[2].fill_(3e38)
            model.mu.bias[2] = 3e38
    with mlflow.start_run(run_name=f"vae-{latent_dim}-{seed}") as run:
        model_store.log_model(model, cfg.model_dump(), (1, 28, 28))
    return f"runs:/{run.info.run_id}/model"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Encodings written in this process (no Ray: small splits take that path); "two" is
    written in shards of 150 rows, as a larger split would be."""
    root = tmp_path_factory.mktemp("verify")
    with mlflow_state_restored(), pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        uri = use_store(f"sqlite:///{root}/mlflow.db", EXPERIMENT)
        data = make_idx_dataset(root / "idx", n_train=40, n_test=300)
        models = {"a": log_vae(4), "b": log_vae(4, seed=1), "narrow": log_vae(3)}
        kw = dict(data_path=str(data), batch_size=64)
        encs = {
            "one": encode(models["a"], "mnist", "test", root / "one", **kw),  # in this process
            "two": encode_in_shards(models["a"], root / "two", **kw),
            "b": encode(models["b"], "mnist", "test", root / "b", **kw),
            "narrow": encode(models["narrow"], "mnist", "test", root / "narrow", **kw),
        }
        yield {"root": root, "uri": uri, "data": data, "models": models, "encs": encs}


def encode_in_shards(model_uri: str, out: Path, **kw):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LATENTATLAS_SHARD_ROWS", "150")
        return encode(model_uri, "mnist", "test", out, **kw)


def copy(store, name: str, to: str, manifest: bool = True) -> Path:
    out = store["root"] / "damaged" / to
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(store["encs"][name].path, out)
    if not manifest:
        (out / MANIFEST_FILE).unlink()
    return out


def shards(path: Path) -> list[Path]:
    return sorted(path.glob("*.parquet"))


def runs(store) -> int:
    exp = mlflow.get_experiment_by_name(EXPERIMENT)
    return len(mlflow.MlflowClient(store["uri"]).search_runs([exp.experiment_id]))


def errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


def refused(store, capsys, verb, *args) -> str:
    """Run a verb in this process: exit 2, exactly one `error:` line, no run logged."""
    before = runs(store)
    code = verb.main([*args, "--tracking-uri", store["uri"], "--experiment", EXPERIMENT])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(errors(err)) == 1, err
    assert runs(store) == before
    return errors(err)[0]


def verified(capsys, path: Path, *more) -> tuple[int, list[str]]:
    code = verify_verb.main([str(path), *more])
    return code, errors(capsys.readouterr().err)


def test_a_written_encoding_carries_a_manifest_that_verify_accepts(store, capsys):
    for name in ("one", "two"):
        path = store["encs"][name].path
        manifest = json.loads((path / MANIFEST_FILE).read_text())
        assert manifest["rows"] == 300 and manifest["index"] == [0, 299]
        listed = {s["name"]: s for s in manifest["shards"]}
        assert set(listed) == {p.name for p in shards(path)}
        assert sum(s["rows"] for s in listed.values()) == 300
        for shard in shards(path):
            assert listed[shard.name]["bytes"] == shard.stat().st_size
            assert len(listed[shard.name]["sha256"]) == 64
        assert [f["name"] for f in manifest["files"]] == ["_common_metadata"]
        code = verify_verb.main([str(path)])
        out = capsys.readouterr()
        assert code == 0 and errors(out.err) == [] and "ok" in out.out
    assert len(shards(store["encs"]["two"].path)) == 2


def test_a_truncated_shard_is_one_line_for_open_stats_and_verify(store, capsys):
    path = copy(store, "two", "truncated")
    victim = shards(path)[0]
    victim.write_bytes(victim.read_bytes()[:300])
    with pytest.raises(UserError, match=rf"shard {victim.name}: 300 bytes, the manifest says "
                                        r"\d+ \(truncated after writing\)"):
        open_encoding(path)
    line = refused(store, capsys, stats_verb, str(path))
    assert victim.name in line and "truncated" in line
    code, lines = verified(capsys, path)
    assert code == 2 and any(victim.name in x and "truncated" in x for x in lines)
    # without a manifest, the footer itself is unreadable: still one line naming the shard
    (path / MANIFEST_FILE).unlink()
    with pytest.raises(UserError, match=rf"shard {victim.name}: not a readable Parquet file "
                                        r"\(300 bytes; truncated or damaged"):
        open_encoding(path)


def test_common_metadata_overwritten_with_random_bytes(store, capsys):
    path = copy(store, "one", "metadata")
    meta = path / "_common_metadata"
    meta.write_bytes(np.random.default_rng(0).bytes(meta.stat().st_size))  # same size
    with pytest.raises(UserError, match=r"_common_metadata: not a Parquet metadata file "
                                        r"\(damaged"):
        open_encoding(path)
    assert "_common_metadata" in refused(store, capsys, stats_verb, str(path))
    code, lines = verified(capsys, path)
    assert code == 2 and any("file _common_metadata: its sha256 differs" in x for x in lines)


def test_a_deleted_shard_is_refused_not_half_the_statistics(store, capsys):
    path = copy(store, "two", "deleted")
    victim = shards(path)[1]
    rows = pq.ParquetFile(victim).metadata.num_rows
    victim.unlink()
    line = refused(store, capsys, stats_verb, str(path))
    assert f"shard {victim.name}: missing ({rows} rows, indices" in line
    assert "the encoding is incomplete" in line
    code, lines = verified(capsys, path)
    assert code == 2 and any(f"shard {victim.name}: missing" in x for x in lines)
    # an encoding of an earlier version (no manifest): its metadata's row count still tells
    (path / MANIFEST_FILE).unlink()
    with pytest.raises(UserError, match=rf"the shards hold {300 - rows} rows but the encoding "
                                        r"has 300 \(rows are missing"):
        open_encoding(path)


def test_a_shard_copied_in_from_another_encoding(store, capsys):
    foreign = shards(store["encs"]["b"].path)[0]  # another model's codes of the same images
    path = copy(store, "one", "foreign")
    shutil.copy(foreign, path / foreign.name)  # the same name: it replaces the shard
    code, lines = verified(capsys, path)  # verify reads checksums: caught whatever its size
    assert code == 2 and any(foreign.name in x for x in lines)
    # Opening reads sizes only (checksums are verify's), and two models' codes of the same
    # images can compress to the same size: the shard is padded to a size of its own.
    own = (store["encs"]["one"].path / foreign.name).stat().st_size
    path = copy(store, "one", "foreign-size")
    table, pad = pq.read_table(foreign), 64
    while True:
        pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}),
                                                      b"pad": b"x" * pad}), path / foreign.name)
        if (path / foreign.name).stat().st_size != own:
            break
        pad += 1
    line = refused(store, capsys, stats_verb, str(path))
    assert f"shard {foreign.name}:" in line and "the manifest says" in line
    # an extra shard beside the encoding's own
    path = copy(store, "one", "extra")
    shutil.copy(foreign, path / "part-00001.parquet")
    with pytest.raises(UserError, match=r"shard part-00001.parquet: not in the manifest"):
        open_encoding(path)


def test_duplicate_indices(store, capsys):
    path = copy(store, "two", "duplicates")
    first, second = shards(path)
    shutil.copy(first, second)  # the first shard's rows twice, the second's gone
    line = refused(store, capsys, stats_verb, str(path))
    assert f"shard {second.name}:" in line
    (path / MANIFEST_FILE).unlink()  # an earlier version's encoding: the footers tell
    with pytest.raises(UserError, match=rf"duplicate indices: shards {first.name} \(0\.\.\d+\) "
                                        rf"and {second.name} \(0\.\.\d+\)"):
        open_encoding(path)
    code, lines = verified(capsys, path)
    assert code == 2 and any("duplicate indices" in x for x in lines)


def test_a_shard_of_the_wrong_width(store, capsys):
    path = copy(store, "one", "narrow", manifest=False)
    narrow = shards(store["encs"]["narrow"].path)[0]  # 3 latent variables, not 4
    shutil.copy(narrow, path / narrow.name)
    with pytest.raises(UserError, match=rf"shard {narrow.name}: column \w+ holds codes of width "
                                        r"3, the encoding's holds codes of width 4"):
        open_encoding(path)
    line = refused(store, capsys, stats_verb, str(path))
    assert "width 3" in line


def write_nan_codes(path: Path, item: int) -> None:
    """A bad writer's codes: item `item`'s mu set to NaN, the shard rewritten in place."""
    import ray.data  # noqa: F401  (tensor extension type)

    shard = shards(path)[0]
    table = pq.read_table(shard)
    mu = table.column("mu").combine_chunks().to_numpy_ndarray().copy()
    row = int(np.flatnonzero(table.column("index").to_numpy() == item)[0])
    mu[row, 1] = np.nan
    from ray.data.extensions import ArrowTensorArray

    table = table.set_column(table.schema.get_field_index("mu"), "mu",
                             ArrowTensorArray.from_numpy(mu))
    pq.write_table(table, shard, row_group_size=8192)


def test_codes_with_nan_are_one_line_for_stats_relocate_and_verify(store, capsys):
    path = copy(store, "one", "nan", manifest=False)  # as a bad writer of old left it
    write_nan_codes(path, item=7)
    line = refused(store, capsys, stats_verb, str(path))
    assert "item 7 has non-finite codes (mu holds nan)" in line
    line = refused(store, capsys, relocate_verb, "--source", str(path), "--target",
                   str(store["encs"]["b"].path))
    assert "item 7 has non-finite codes (mu holds nan)" in line
    code, lines = verified(capsys, path)
    assert code == 2 and any("item 7 has non-finite codes" in x for x in lines)
    with pytest.raises(UserError, match="there are problems|item 7 has non-finite codes"):
        from latentatlas.encode.store import write_manifest

        write_manifest(path)
    assert not (path / MANIFEST_FILE).exists()
    # the same rewrite under the manifest written before: a NaN takes the bytes of the number
    # it replaced, so the sizes agree and the open check passes; the codes are still refused
    # on reading, and the checksum tells verify that the shard is not what was written
    path = copy(store, "one", "nan-manifest")
    write_nan_codes(path, item=7)
    assert "item 7 has non-finite codes" in refused(store, capsys, stats_verb, str(path))
    code, lines = verified(capsys, path)
    assert code == 2 and any("shard part-00000.parquet: its sha256 differs" in x for x in lines)


def test_codes_with_nan_read_through_ray_data_are_one_line(store, capsys, ray_session,
                                                            monkeypatch):
    """At scale the passes read an encoding on Ray Data: a block holding NaN stops the
    pipeline, and the UserError raised in the Ray task reaches the user as one line."""
    monkeypatch.setenv("LATENTATLAS_LOCAL_ROWS", "0")  # every pass on Ray Data
    path = copy(store, "one", "nan-ray", manifest=False)
    write_nan_codes(path, item=7)
    line = refused(store, capsys, stats_verb, str(path))
    assert "a block: item 7 has non-finite codes (mu holds nan)" in line


def test_encode_refuses_non_finite_codes_naming_the_item_and_the_model(store):
    uri = log_vae(4, seed=2, overflow=True)
    out = store["root"] / "never"
    with pytest.raises(UserError, match=rf"--model {uri}: the codes of item \d+ of mnist:test "
                                        r"are not finite \(mu holds -?inf\).*nothing was written"):
        encode(uri, "mnist", "test", out, data_path=str(store["data"]), batch_size=64)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".never")]


def test_an_earlier_versions_encoding_opens_with_a_warning_and_gets_a_manifest(store, capsys):
    path = copy(store, "two", "legacy", manifest=False)
    WARNED.discard(path.resolve())
    assert open_encoding(path).meta.rows == 300
    err = capsys.readouterr().err
    warnings = [x for x in err.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1 and f"latentatlas verify --write-manifest {path}" in warnings[0]
    code = verify_verb.main([str(path)])
    out = capsys.readouterr()
    assert code == 0 and "no manifest" in out.out and "--write-manifest" in out.out
    assert verify_verb.main(["--write-manifest", str(path)]) == 0
    capsys.readouterr()
    written = json.loads((path / MANIFEST_FILE).read_text())
    assert written == json.loads((store["encs"]["two"].path / MANIFEST_FILE).read_text())
    WARNED.discard(path.resolve())
    open_encoding(path)
    assert "warning" not in capsys.readouterr().err
    assert verified(capsys, path) == (0, [])


def test_verify_is_a_verb_of_the_console_script_and_a_module(store, capsys):
    """`python -m jobs.verify` in a fresh process (Ray's tensor type not registered there:
    the width still reads from the footer), and `latentatlas verify` through the dispatcher."""
    from jobs import cli

    path = copy(store, "one", "module", manifest=False)
    narrow = shards(store["encs"]["narrow"].path)[0]
    shutil.copy(narrow, path / narrow.name)
    done = run_cli_module(["jobs.verify", str(path)], store["root"])
    assert done.returncode == 2 and len(errors(done.stderr)) == 1, done.stderr
    assert "holds codes of width 3, the encoding's holds codes of width 4" in done.stderr
    assert cli.main(["verify", str(store["encs"]["one"].path)]) == 0
    assert "ok (1 shards, 300 rows, sha256 checked)" in capsys.readouterr().out


def test_the_recorder_never_logs_a_nan_metric(store):
    recorder = tracking.Recorder(store["uri"], EXPERIMENT)
    before = runs(store)
    with pytest.raises(UserError, match=r"stats x: metric latent/stationary_mean is nan"):
        recorder.record(Record("stats", "stats x", metrics={"latent/active_units": 3,
                                                             "latent/stationary_mean": np.nan}))
    with pytest.raises(UserError, match=r"metric relocation/L is inf"):
        with recorder.run("open", "test") as run_id:
            recorder.write(run_id, Record("relocate", "", metrics={"relocation/L": np.inf}))
    assert runs(store) == before + 1  # the second one's run, with nothing in it
    run = [r for r in recorder.runs_of("test")][0]
    assert run.data.metrics == {} and run.info.status == "FAILED"


def model_file(store, uri: str) -> Path:
    """The stored state_dict.pt of a logged model (in this store's mlartifacts)."""
    from mlflow.artifacts import download_artifacts

    local = Path(download_artifacts(uri)) / "extra_files" / model_store.STATE_DICT
    size = local.stat().st_size
    found = [p for p in (store["root"] / "mlartifacts").rglob(model_store.STATE_DICT)
             if p.read_bytes() == local.read_bytes()]
    assert len(found) == 1 and found[0].stat().st_size == size
    return found[0]


def test_damaged_model_directories_are_one_line(store, capsys):
    from jobs import encode as encode_verb

    cases = {}
    uri = log_vae(4, seed=3)
    weights = model_file(store, uri)
    weights.write_bytes(weights.read_bytes()[:300])
    cases["truncated"] = (uri, "state_dict.pt is not a LatentAtlas state dict")
    uri = log_vae(4, seed=4)
    shutil.copy(model_file(store, store["models"]["narrow"]), model_file(store, uri))
    cases["another spec"] = (uri, "the weights do not fit the model its spec describes")
    uri = log_vae(4, seed=5)
    weights = model_file(store, uri)
    state = torch.load(weights, weights_only=True)
    state["mu.weight"][0, 0] = float("nan")
    torch.save(state, weights)
    cases["nan"] = (uri, r"state_dict.pt holds non-finite weights \(mu.weight\)")
    for name, (uri, message) in cases.items():
        with pytest.raises(UserError, match=message):
            model_store.load_model(uri)
        line = refused(store, capsys, encode_verb, "--model", uri, "--data", "mnist:test",
                       "--data-path", str(store["data"]), "--out",
                       str(store["root"] / f"never-{name.replace(' ', '-')}"))
        assert line.startswith(f"error: --model {uri}: "), (name, line)


def test_a_damaged_checkpoint_is_one_line_before_a_resume_starts(store):
    """A checkpoint written by the training loop itself (the one-worker session, run here in
    this process), then damaged: what `train` checks in the driver before a resume starts
    (a truncated file, another model's state, non-finite weights) is one line naming it."""
    from latentatlas.config import validate
    from latentatlas.train.families import FAMILIES
    from latentatlas.train.loop import CHECKPOINT_FILE, run_single_worker
    from latentatlas.train.runner import check_resume_checkpoint, storage_path

    cfg = validate({"name": "ckpt", "seed": 0,
                    "data": {"name": "mnist", "path": str(store["data"]), "limit": 32},
                    "model": {"name": "dense_vae", "hidden": [8], "latent_dim": 4},
                    "train": {"epochs": 1, "batch_size": 16}}, "test")
    cfg, inputs = FAMILIES[cfg.family].inputs(cfg)
    name = "ckpt-run"
    folder = Path(storage_path(cfg)) / name
    folder.mkdir(parents=True, exist_ok=True)
    out = run_single_worker({"experiment": cfg.model_dump(), "mlflow": None,
                             "data": inputs.data}, str(folder), 1, False)
    checkpoint = Path(out["checkpoint"]) / CHECKPOINT_FILE
    check_resume_checkpoint(cfg, name, inputs.input_shape)  # as written: accepted
    good = checkpoint.read_bytes()
    checkpoint.write_bytes(good[:300])
    with pytest.raises(UserError, match=rf"{checkpoint}: not a readable checkpoint \(truncated "
                                        r"or damaged.*; remove .* to continue from the one before"):
        check_resume_checkpoint(cfg, name, inputs.input_shape)
    state = torch.load(io.BytesIO(good), weights_only=True)
    state["model"] = build_model(DenseVAEConfig(hidden=[8], latent_dim=3),
                                 (1, 28, 28)).state_dict()
    torch.save(state, checkpoint)
    with pytest.raises(UserError, match=rf"{checkpoint}: the checkpoint is not of this "
                                        r"config's model \(dense_vae\)"):
        check_resume_checkpoint(cfg, name, inputs.input_shape)
    state = torch.load(io.BytesIO(good), weights_only=True)
    state["model"]["mu.bias"][0] = float("inf")
    torch.save(state, checkpoint)
    with pytest.raises(UserError, match=r"holds non-finite weights \(mu.bias\)"):
        check_resume_checkpoint(cfg, name, inputs.input_shape)


def test_a_damaged_sweep_state_is_one_line(tmp_path):
    from latentatlas.tune.spec import SWEEP_STATE
    from latentatlas.tune.tuner import read_state

    (tmp_path / SWEEP_STATE).write_text('{"sweep": {"name": "s"}, "parent_')
    with pytest.raises(UserError, match=rf"{SWEEP_STATE} is damaged \(not valid JSON"):
        read_state(str(tmp_path))
    (tmp_path / SWEEP_STATE).write_text('{"sweep": {}}')
    with pytest.raises(UserError, match=r"is damaged \(lacks parent_run_id, tracking_uri"):
        read_state(str(tmp_path))


def test_schema_tables_from_pyarrow_round_trip_the_tensor_width():
    """The width check reads Ray's tensor type from the footer's Arrow schema."""
    from ray.data.extensions import ArrowTensorArray

    from latentatlas.encode.manifest import describe_field

    field = pa.table({"mu": ArrowTensorArray.from_numpy(np.zeros((2, 5), np.float32))}).schema[0]
    assert describe_field(field) == "codes of width 5"


def test_a_damaged_table_of_an_earlier_run_is_one_line(store):
    """What a study reads back from an earlier run (the information gain of a `stats` run)."""
    recorder = tracking.Recorder(store["uri"], EXPERIMENT)
    with recorder.run("table", "test-table") as run_id:
        recorder.client.log_text(run_id, '{"columns": ["variable"], "data": [[0], [1', "t.json")
        recorder.client.log_dict(run_id, {"columns": ["variable", "gain"], "data": [[0]]},
                                 "short.json")
    with pytest.raises(UserError, match=rf"run {run_id}: its table t.json is damaged"):
        recorder.table(run_id, "t.json")
    with pytest.raises(UserError, match=rf"run {run_id}: its table short.json is damaged"):
        recorder.table(run_id, "short.json")
    assert recorder.table(run_id, "missing.json") is None
