"""Write one KubeRay RayJob manifest per job (rayjob-<name>.yaml) from raycluster.yaml and the table below.

    python cluster/kuberay/render.py           # rewrite the manifests
    python cluster/kuberay/render.py --check   # exit 1 if a committed manifest differs from what this writes

Each RayJob brings up its own cluster (raycluster.yaml's spec), submits one job, and deletes the cluster when the
job ends (shutdownAfterJobFinishes, after ttlSecondsAfterFinished); activeDeadlineSeconds stops a job that runs
past its budget. Paths follow the pipeline's layout under ROOT (configs/pipeline/biomed_full.yaml), so the
single-stage jobs and `ray_jobs.pipeline` read and write the same places.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = "/mnt/shared/gliner-biomed/runs/biomed-full"
HOUR = 3600
TTL_SECONDS = HOUR  # keep a finished job's cluster an hour for its logs, then delete it

# name: (entrypoint, deadline in seconds)
JOBS: dict[str, tuple[str, int]] = {
    "curate": (f"python -m ray_jobs.curate --config configs/curate/biomed_sources.yaml --output {ROOT}/curate", 24 * HOUR),
    "annotate": (f"python -m ray_jobs.annotate --config configs/annotate/teacher_70b.yaml --documents {ROOT}/curate/documents "
                 f"--output {ROOT}/annotate", 72 * HOUR),
    "distill": (f"python -m ray_jobs.distill --config configs/distill/openbiollm_8b_lora.yaml --documents {ROOT}/curate/documents "
                f"--annotations {ROOT}/annotate/annotations --output {ROOT}/distill", 24 * HOUR),
    "synthesize": (f"python -m ray_jobs.synthesize --config configs/synthesize/openbiollm_8b.yaml --documents {ROOT}/curate/documents "
                   f"--model {ROOT}/distill/merged --exclude-annotated {ROOT}/annotate --output {ROOT}/synthesize", 96 * HOUR),
    "convert": (f"python -m ray_jobs.convert --config configs/convert/default.yaml --annotations {ROOT}/annotate/annotations "
                f"--annotations {ROOT}/synthesize/annotations --documents {ROOT}/curate/documents --output {ROOT}/convert", 12 * HOUR),
    "pretrain": (f"python -m ray_jobs.train --config configs/train/uni_base_pretrain.yaml --output {ROOT}/pretrain "
                 f"data.train={ROOT}/convert/examples", 72 * HOUR),
    "posttrain": (f"python -m ray_jobs.train --config configs/train/uni_base_posttrain.yaml --output {ROOT}/posttrain "
                  f"model.init_from={ROOT}/pretrain/final_model", 48 * HOUR),
    "evaluate": (f"python -m ray_jobs.evaluate --config configs/evaluate/biomed_zero_shot.yaml --model {ROOT}/posttrain/final_model "
                 f"--output {ROOT}/evaluate", 6 * HOUR),
    "tag": (f"python -m ray_jobs.tag --config configs/tag/pubmed_baseline.yaml --model {ROOT}/posttrain/final_model "
            f"--output {ROOT}/tag", 72 * HOUR),
    "pipeline": ("python -m ray_jobs.pipeline --config configs/pipeline/biomed_full.yaml", 14 * 24 * HOUR),
}


def cluster_spec() -> dict:
    return yaml.safe_load((HERE / "raycluster.yaml").read_text(encoding="utf-8"))["spec"]


def rayjob(name: str, entrypoint: str, deadline_seconds: int, spec: dict) -> dict:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": f"gliner-{name}", "labels": {"app.kubernetes.io/name": "gliner-biomed", "gliner.io/job": name}},
        "spec": {
            "entrypoint": entrypoint,
            "submissionMode": "K8sJobMode",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": TTL_SECONDS,
            "activeDeadlineSeconds": deadline_seconds,
            "backoffLimit": 2,  # a resubmission resumes: every job skips the work it already committed
            "rayClusterSpec": spec,
        },
    }


def rendered() -> dict[Path, str]:
    spec = cluster_spec()
    header = "# Written by cluster/kuberay/render.py from raycluster.yaml: edit those, then run it.\n"
    return {HERE / f"rayjob-{name}.yaml": header + yaml.safe_dump(rayjob(name, entrypoint, deadline, spec), sort_keys=False, width=140)
            for name, (entrypoint, deadline) in JOBS.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for path, text in rendered().items():
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date (run python cluster/kuberay/render.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
