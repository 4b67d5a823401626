"""A local Ray instance keeps token authentication on without writing the user's home."""

import os

from conftest import SESSION_HOME

from latentatlas.runtime import local_token_env


def test_a_local_instance_has_a_token_that_no_file_holds(ray_session):
    # conftest gives the session an empty HOME: plain ray.init() would write its token
    # file (mode 0644) into it.
    assert not (SESSION_HOME / ".ray").exists()
    assert os.environ["RAY_AUTH_MODE"] == "token" and len(os.environ["RAY_AUTH_TOKEN"]) == 64

    @ray_session.remote
    def worker_token():
        return os.environ.get("RAY_AUTH_TOKEN")

    assert ray_session.get(worker_token.remote()) == os.environ["RAY_AUTH_TOKEN"]


def test_a_configured_token_is_used_as_it_is(tmp_path):
    fresh = local_token_env({}, tmp_path)  # nothing configured: a fresh token, no file
    assert fresh["RAY_AUTH_MODE"] == "token" and len(fresh["RAY_AUTH_TOKEN"]) == 64
    assert local_token_env({}, tmp_path)["RAY_AUTH_TOKEN"] != fresh["RAY_AUTH_TOKEN"]
    assert not (tmp_path / ".ray").exists()
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        assert local_token_env({key: "x"}, tmp_path) == {}
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(fresh["RAY_AUTH_TOKEN"])
    assert local_token_env({}, tmp_path) == {}  # an existing token file is used
