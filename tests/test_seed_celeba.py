"""The seed's CelebA study file (jobs/configs/seed_celeba.yaml) end to end, as shipped, on a
small CelebA folder written here (Kaggle's layout), with a random StyleGAN2 checkpoint and
Inception weights built here, every model shrunk and trained one epoch on CPUs by `--set`:
what runs on a GPU cluster runs here, step for step, at a size that proves the wiring."""

import json

import mlflow
import numpy as np
import pytest
import torch
from test_data import write_celeba
from test_pretrained import tiny_stylegan2

from jobs.run import main as run_job
from latentatlas.inception import FIDInception

TRAININGS = ("split-s0", "split-s1", "vae", "dcgan", "dcgan-recoder", "stylegan-recoder")


def faces(folder, n=260):
    """CelebA-format images (178x218) whose face crop holds a blob that moves and changes
    colour with its index: something a VAE can learn in one epoch."""
    from PIL import Image

    names = write_celeba(folder, sizes=((178, 218),) * n,
                         partition=tuple(0 if i < 200 else 1 if i < 230 else 2
                                                   for i in range(n)),
                         kaggle=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:218, :178]
    for name in names:
        cy, cx = 80 + rng.integers(0, 60), 60 + rng.integers(0, 60)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 300.0)[..., None]
        colour = rng.uniform(0.2, 1, 3)
        img = (255 * blob * colour).astype(np.uint8)
        Image.fromarray(img).save(folder / "img_align_celeba" / "img_align_celeba" / name,
                                  format="PNG")


@pytest.mark.slow
def test_the_seed_celeba_study_runs_end_to_end(workdir, ray_session, capsys):
    data = workdir / "celeba"
    faces(data)
    tiny_stylegan2(workdir / "stylegan2.pt")
    torch.manual_seed(0)
    inception = workdir / "pt_inception.pth"
    torch.save({k: v for k, v in FIDInception().state_dict().items()
                if "num_batches_tracked" not in k}, inception)
    small = [f"{t}.train.use_gpu=false" for t in TRAININGS]
    small += [f"{t}.{k}" for t in ("split-s0", "split-s1", "vae")
              for k in ("model.base=4", "model.scales=2", "model.fc=32")]
    # the reference space is what every analysis reads first: it reserves a whole CPU, so
    # fewer trainings run beside it
    small += ["split-s0.train.cpus_per_worker=1", "split-s1.train.cpus_per_worker=0.5",
              "vae.train.cpus_per_worker=0.5"]
    small += [f"{t}.train.batch_size=50" for t in ("split-s1", "vae")]
    # one epoch each, but the reference space: its sectors need active variables, which a
    # weak KL, small batches and a few epochs give it
    small += [f"{t}.train.epochs=1" for t in TRAININGS if t != "split-s0"]
    small += ["split-s0.kl.beta=0.001", "split-s0.train.lr=0.003", "split-s0.train.epochs=8",
              "split-s0.train.batch_size=10"]
    small += ["dcgan.model.channels=[32,16,8,4]", "dcgan.train.batch_size=50",
              "dcgan.train.cpus_per_worker=0.5"]
    small += [f"{t}.{k}" for t in ("dcgan-recoder", "stylegan-recoder")
              for k in ("model.channels=[8,16]", "model.hidden=32", "invert.steps_per_epoch=3",
                        "invert.holdout=32", "train.batch_size=16",
                        "train.cpus_per_worker=0.5")]
    small += [f"{r}.{k}" for r in ("range-dcgan", "range-dcgan-ascent", "range-stylegan",
                                   "range-stylegan-ascent")
              for k in ("samples=16", "real_images=10", "size=8", "k=2", "threshold=0.01")]
    small += [f"{s}.size=8" for s in ("support-set", "support-set-hat-free")]
    small += ["sectors.k=2", "sectors.threshold=0.01", "stats-split-s0.gain_rows=50"]
    small += ["relocate-type3-stylegan.pairs=64", "relocate-type3-stylegan.scored_images=64"]
    small += [f"{r}.refine_steps=2" for r in ("range-dcgan-ascent", "range-stylegan-ascent")]
    small += [f"{f}.{k}" for f in ("fid-split", "fid-vae")
              for k in ("samples=8", "gmm_components=2", f"inception_weights={inception}")]
    small += [f"stylegan.inputs.model=stylegan2:{workdir / 'stylegan2.pt'}"
              "?image=3x64x64&crop=0.83"]
    uri = f"sqlite:///{workdir}/mlflow.db"
    code = run_job(["--config", "seed_celeba.yaml", "--dataset", "celeba", "--data-path",
                    str(data), "--tracking-uri", uri,
                    *[a for s in small for a in ("--set", s)]])
    out, err = capsys.readouterr()
    assert code == 0, err
    parent_id = out.split("MLflow run id: ")[1].split()[0]
    steps = json.loads(open(mlflow.artifacts.download_artifacts(
        run_id=parent_id, artifact_path="steps.json", tracking_uri=uri)).read())
    ran = {name for name, o in steps.items() if not o.get("skipped")}
    assert {"stylegan", *TRAININGS, "relocate-type1", "relocate-type3-stylegan",
            "range-stylegan", "fid-split"} <= ran, sorted(set(steps) - ran)
    # the hat-free support set holds no row with a hat (the CelebA attribute is in the codes)
    hat_free = steps["support-set-hat-free"]["index"]
    from latentatlas.encode import open_encoding

    hats = open_encoding(steps["encode-split-s0"]["address"]).arrays(["Wearing_Hat"])
    assert hat_free and not hats["Wearing_Hat"][hat_free].any()
