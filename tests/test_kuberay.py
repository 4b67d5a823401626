"""The KubeRay manifests (kuberay/) against KubeRay's own CRD schemas (tests/data/kuberay,
with their version and origin): every field of the right type, none unknown to the schema
(Kubernetes would drop a misspelt field silently), and what the platform needs of them: token
authentication from a Secret, MLflow's credentials from a Secret, GPU workers requested by
resource, the jobs on the cluster by its name."""

import functools
import gzip
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CRDS = Path(__file__).resolve().parent / "data" / "kuberay"


@functools.cache
def schema(kind: str) -> dict:
    with gzip.open(CRDS / f"ray.io_{kind.lower()}s.yaml.gz", "rt") as f:
        crd = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def unknown_fields(value, node: dict, path: str = "") -> list[str]:
    """Keys of `value` that its schema does not declare (where it declares its keys)."""
    if isinstance(value, list):
        return [u for i, v in enumerate(value)
                for u in unknown_fields(v, node.get("items", {}), f"{path}[{i}]")]
    if not isinstance(value, dict) or node.get("x-kubernetes-preserve-unknown-fields"):
        return []
    properties, extra = node.get("properties"), node.get("additionalProperties")
    out = []
    for key, item in value.items():
        if properties is None:  # a map (labels, resources) or a free object
            out += unknown_fields(item, extra if isinstance(extra, dict) else {},
                                  f"{path}.{key}")
        elif key not in properties:
            out.append(f"{path}.{key}")
        else:
            out += unknown_fields(item, properties[key], f"{path}.{key}")
    return out


def checked(path: Path) -> dict:
    manifest = yaml.safe_load(path.read_text())
    node = schema(manifest["kind"])
    jsonschema.validate(manifest, node)
    assert unknown_fields(manifest, node) == [], path
    return manifest


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob-main.yaml", "rayjob-study.yaml"])
def test_each_manifest_is_valid_against_kuberays_schema(name):
    checked(ROOT / "kuberay" / name)


def test_the_cluster_runs_the_jobs_with_token_auth_secrets_and_gpu_workers():
    cluster = checked(ROOT / "kuberay" / "raycluster.yaml")
    spec = cluster["spec"]
    assert spec["authOptions"] == {"mode": "token", "secretName": "latentatlas-ray-token"}
    assert spec["rayVersion"] == "2.60.0"  # the Ray the platform pins (constraints.txt)
    assert "ray==2.60.0" in (ROOT / "constraints.txt").read_text()
    pods = [spec["headGroupSpec"]["template"]["spec"],
            *(g["template"]["spec"] for g in spec["workerGroupSpecs"])]
    for pod in pods:  # every container reads MLflow's credentials from the Secret
        for container in pod["containers"]:
            secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
                      if "valueFrom" in e}
            assert {k: v["name"] for k, v in secret.items()} == {
                "MLFLOW_TRACKING_URI": "latentatlas-mlflow",
                "MLFLOW_TRACKING_USERNAME": "latentatlas-mlflow",
                "MLFLOW_TRACKING_PASSWORD": "latentatlas-mlflow"}
            assert not any("value" in e and "PASSWORD" in e["name"] for e in container["env"])
    (gpu,) = spec["workerGroupSpecs"]
    (worker,) = gpu["template"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    for name, config in (("rayjob-main.yaml", None), ("rayjob-study.yaml", "support150.yaml")):
        job = checked(ROOT / "kuberay" / name)["spec"]
        assert job["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
        assert job["entrypoint"].startswith("latentatlas run")
        if config:
            assert f"--config jobs/configs/{config}" in job["entrypoint"]
            assert (ROOT / "jobs" / "configs" / config).is_file()


def test_a_misspelt_or_mistyped_field_is_caught():
    manifest = yaml.safe_load((ROOT / "kuberay" / "raycluster.yaml").read_text())
    node = schema("RayCluster")
    manifest["spec"]["authOption"] = manifest["spec"].pop("authOptions")
    assert unknown_fields(manifest, node) == [".spec.authOption"]
    manifest["spec"]["workerGroupSpecs"][0]["replicas"] = "two"
    with pytest.raises(jsonschema.ValidationError, match="'two' is not of type 'integer'"):
        jsonschema.validate(manifest, node)
