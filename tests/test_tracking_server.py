"""A lab's tracking server (issue #44, part 1): a real PostgreSQL, initialised by the test in
a temporary folder on a loopback port, and `mlflow server --app-name basic-auth` on it. A
client without a login is refused in one line, as is a wrong password; with the login a
training, its encoding's stats and 16 concurrent writers log as on SQLite; the runs are rows
of PostgreSQL, and so are the logins (a second database, as cluster.yaml keeps them). Where
PostgreSQL cannot run (not installed, no way to start it as a non-root user) the test skips
and says why (`-ra` prints it)."""

import secrets
import sys

import mlflow
import pytest
from conftest import REPO, make_idx_dataset

pytestmark = pytest.mark.cluster


@pytest.fixture
def bench(monkeypatch):
    """bench/local_postgres.py and bench/tracking_load.py, imported for this test only."""
    monkeypatch.syspath_prepend(str(REPO / "bench"))
    import local_postgres
    import tracking_load

    why = local_postgres.unavailable()
    if why:
        pytest.skip(f"no PostgreSQL here: {why}")
    yield local_postgres, tracking_load
    for name in ("local_postgres", "tracking_load"):
        sys.modules.pop(name, None)


def one_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines()
           if not line.startswith("Ray's own messages")]
    assert len(err) == 1, err
    return err[0]


def test_a_tracking_server_on_postgres_behind_logins(tmp_path, bench, ray_session, capsys,
                                                      monkeypatch):
    import sqlalchemy
    from mlflow.server import get_app_client

    from jobs import stats as stats_verb
    from jobs import train as train_verb

    local_postgres, tracking_load = bench
    password = secrets.token_hex(8)
    data = make_idx_dataset(tmp_path / "idx", n_train=64, n_test=40)
    monkeypatch.chdir(tmp_path)
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no credentials file of the user's
    with local_postgres.temporary_postgres("mlflow", "mlflow_auth") as pg, \
            tracking_load.mlflow_server(pg, tmp_path, password,
                                        local_postgres.sibling(pg, "mlflow_auth")) as url:
        train = ["jobs/configs/fmnist_dense.yaml", "--tracking-uri", url, "--experiment", "lab",
                 "--set", "data.name=mnist", "--set", f"data.path={data}",
                 "--set", "train.epochs=1", "--set", "name=lab-train",
                 "--set", "train.cpus_per_worker=1"]
        train[0] = str(REPO / train[0])
        capsys.readouterr()
        # no login: one line, exit 2, nothing written
        assert train_verb.main(train) == 2
        assert one_error(capsys) == (
            f"error: {url}: the tracking server asks for a login; set MLFLOW_TRACKING_USERNAME "
            "and MLFLOW_TRACKING_PASSWORD (or keep them in ~/.mlflow/credentials, mode 600)")
        # a wrong password: refused, in one line
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password + "x")
        assert train_verb.main(train) == 2
        assert one_error(capsys) == (f"error: {url}: the tracking server refused the login of "
                                     "'admin' (HTTP 401): check the password")
        # a credentials file others may read is refused before it is used
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
        creds = tmp_path / ".mlflow" / "credentials"
        creds.parent.mkdir()
        creds.write_text(f"[mlflow]\nmlflow_tracking_username = admin\n"
                         f"mlflow_tracking_password = {password}\n")
        creds.chmod(0o644)
        assert train_verb.main(train) == 2
        assert one_error(capsys) == (f"error: {creds}: holds a tracking login but others may "
                                     f"read it (mode 644); chmod 600 {creds}")
        # with the login (the owner's file): a training and a stats run, as on SQLite
        creds.chmod(0o600)
        assert train_verb.main(train) == 0
        out = capsys.readouterr().out
        run_id = out.split("MLflow run id: ")[1].split()[0]
        from latentatlas.encode.pipeline import encode

        with tracking_load.logged_in("admin", password):
            enc = encode(f"runs:/{run_id}/model", "mnist", "test", tmp_path / "enc",
                         data_path=str(data), tracking_uri=url)
        assert stats_verb.main([str(enc.path), "--tracking-uri", url,
                                "--experiment", "lab"]) == 0
        # a login that may read the lab's runs but not write one: refused in one line
        with tracking_load.logged_in("admin", password):
            get_app_client("basic-auth", tracking_uri=url).create_user(
                "reader", password)
        creds.write_text(f"[mlflow]\nmlflow_tracking_username = reader\n"
                         f"mlflow_tracking_password = {password}\n")
        capsys.readouterr()
        assert stats_verb.main([str(enc.path), "--tracking-uri", url,
                                "--experiment", "lab"]) == 2
        assert one_error(capsys) == (f"error: {url}: the tracking server refused 'reader' "
                                     "the request (HTTP 403): ask its admin for EDIT "
                                     "permission")
        creds.write_text(f"[mlflow]\nmlflow_tracking_username = admin\n"
                         f"mlflow_tracking_password = {password}\n")
        with tracking_load.logged_in("admin", password):
            client = mlflow.MlflowClient(url)
            trained = client.get_run(run_id)
            assert trained.info.status == "FINISHED" and "val/mse" in trained.data.metrics
            (stats,) = client.search_runs([trained.info.experiment_id],
                                          "tags.`latentatlas.kind` = 'stats'")
            assert stats.data.metrics["latent/variables"] == 16
            # 16 concurrent writers (threads: the server sees the same requests) lose nothing
            load = tracking_load.load(url, writers=16, metrics=20, backend=pg, threads=True)
        assert load["errors"] == 0, load["first_errors"]
        assert load["lost"] == 0 and load["stored"] == load["attempted"] == 16 * 31
        # ... every run is a row of PostgreSQL, and so is every login (as in cluster.yaml)
        with sqlalchemy.create_engine(pg).connect() as db:
            ids = {r[0] for r in db.execute(sqlalchemy.text("select run_uuid from runs"))}
        assert {run_id, stats.info.run_id} <= ids and len(ids) >= 2 + 16
        auth = local_postgres.sibling(pg, "mlflow_auth")
        with sqlalchemy.create_engine(auth).connect() as db:
            users = {r[0] for r in db.execute(sqlalchemy.text("select username from users"))}
        assert users == {"admin", "reader"}
        assert not list(tmp_path.glob("*.db")), "a login store fell back to SQLite"
