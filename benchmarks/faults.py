"""The faults a real cluster meets, injected into real runs of the tag job, and what each run did: the rows it lost and
the rows it duplicated against an uninterrupted run of the same input (both must be 0).

    .venv/bin/python benchmarks/faults.py [--only reset,throttle,...] [--documents 3000]

Storage: a local folder, and s3:// on moto's S3 server (127.0.0.1) behind the fault-injecting proxy of
tests/fault_proxy.py (connection resets part-way through a response, HTTP 503 SlowDown). Faults:
- reset: connection resets mid-file while the input is read (a few: the S3 client retries them);
- reset_persistent: resets on every read of a part of one file: its unit fails, the rerun (network healed) does it;
- throttle: 503 SlowDown on the commits' PUTs;
- eio: a FUSE mount over the input folder whose reads in one file's second unit fail with EIO 3 times (needs libfuse2 and
  fusepy: `apt-get install libfuse2; pip install fusepy`; else the row says it did not run);
- oom: a worker SIGKILLed on one unit every time, as the kernel's OOM killer does (a poison unit);
- device: a sticky CUDA error in the actor that first meets one document;
- driver_killed: the job's driver and its local Ray SIGKILLed after its first units, then rerun;
- node_removed: on a simulated two-node cluster (ray.cluster_utils), the node holding the model actor removed mid-run;
- changed_labels: a rerun into a finished output with other labels.
A run that fails (exit 1) is rerun once, healed, as a user would; the row counts what the output holds then.
Results: benchmarks/results/faults.json, a list of {"fault", "job", "storage", "outcome", "rows_lost", "rows_duplicated"}.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import fsspec  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from ray_jobs.runtime.job_command import BadInput, JobFailed  # noqa: E402
from ray_jobs.tag import TagConfig, UnitTagger, run  # noqa: E402

WORK = REPO / "benchmarks" / ".work" / "faults"
RESULTS = REPO / "benchmarks" / "results" / "faults.json"
LABELS = ["disease", "chemical", "gene"]
THRESHOLD = 0.3
FAULTS = ["reset", "reset_persistent", "throttle", "eio", "oom", "device", "driver_killed", "changed_labels", "node_removed"]


# ------------------------------------------------------------------------------------------------ set-up
def tiny_model(folder: Path) -> Path:
    """A random GLiNER on a 2-layer BERT with MiniLM's tokenizer: real inference, fast, deterministic per batch."""
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import make_tiny_backbone
    from gliner import GLiNER

    if (folder / "model" / "gliner_config.json").exists():
        return folder / "model"
    backbone = make_tiny_backbone(folder / "backbone")
    torch.manual_seed(1)
    return GLiNER.from_backbone(str(backbone), hidden_size=16, max_len=64, max_width=6).save_pretrained(folder / "model")


def corpus(folder: Path, documents: int) -> Path:
    """Two JSONL files of pieces of the NCBI-disease abstracts (three quarters and one quarter of `documents`)."""
    from gliner.evaluation.pubtator import read_pubtator

    words = [word for split in ("train", "devel", "test") for item in read_pubtator(REPO / f"data/ncbi-disease-pubtator/{split}.pubtator")
             for word in item.text.split()]
    texts, cursor = [], 0
    for index in range(documents):
        length = 12 + index % 20
        texts.append(" ".join(words[cursor:cursor + length]))
        cursor = (cursor + length) % (len(words) - 40)
    folder.mkdir(parents=True, exist_ok=True)
    split = documents * 3 // 4
    for name, part in (("a.jsonl", range(split)), ("b.jsonl", range(split, documents))):
        (folder / name).write_text("".join(json.dumps({"doc_id": f"d{index:05d}", "text": texts[index]}) + "\n" for index in part))
    return folder


class Storage:
    """Where a scenario's input and outputs live: a local folder or a fresh bucket."""

    def __init__(self, kind: str, local_corpus: Path, s3=None):
        self.kind = kind
        if kind == "local":
            self.root = str(WORK / "local")
            self.input = str(local_corpus)
        else:
            self.root = s3.new_bucket("faults")
            filesystem, _ = fsspec.core.url_to_fs(self.root)
            filesystem.put(f"{local_corpus}/", f"{self.root}/corpus", recursive=True)
            self.input = f"{self.root}/corpus"

    def output(self, name: str) -> str:
        return f"{self.root}/{name}"


def config(model: Path, input_path: str, output: str, **changes) -> TagConfig:
    values = {"model": str(model), "labels": LABELS, "threshold": THRESHOLD, "input": input_path, "output": output, "batch_size": 16,
              "units": {"documents": 400, "retries": 1}, "min_actors": 1, "max_actors": 1, "cpus_per_actor": 1, "torch_threads": 1}
    return TagConfig.model_validate(values | changes)


def rows_of(output: str) -> Counter:
    """Every entity and error row of an output, as a multiset."""
    filesystem, path = fsspec.core.url_to_fs(output, use_listings_cache=False)
    rows: Counter = Counter()
    for folder in ("entities", "errors"):
        for name in filesystem.glob(f"{path}/{folder}/*.parquet"):
            rows.update((folder, *map(str, row.values())) for row in pq.read_table(name, filesystem=filesystem).to_pylist())
    return rows


def compare(reference: Counter, output: str) -> dict:
    found = rows_of(output)
    return {"rows_lost": sum((reference - found).values()), "rows_duplicated": sum((found - reference).values()), "rows": sum(found.values())}


def run_and_rerun(first, rerun) -> tuple[str, dict]:
    """first(): a run with the fault; if it fails (exit 1), rerun() once with the fault gone."""
    started = time.time()
    try:
        summary = first()
        return f"complete, exit 0 ({time.time() - started:.0f} s)", summary
    except JobFailed as error:
        message = str(error)
    summary = rerun()
    return (f"exit 1: {message[:160]}; rerun: {summary['counts']['units_run']} unit(s) run, "
            f"{summary['counts']['units_skipped']} skipped, exit 0"), summary


# ------------------------------------------------------------------------------------------------ the faults
def faulty_tagger(marks: Path, kind: str) -> type:
    """The real model, with a fault on cue: "oom" SIGKILLs its worker on the unit holding document d00500, every
    time; "device" raises a sticky CUDA error once, in the first actor that meets d00500."""
    def first_time(name: str) -> bool:
        try:
            os.close(os.open(marks / name, os.O_CREAT | os.O_EXCL))
            return True
        except FileExistsError:
            return False

    class FaultyTagger(UnitTagger):
        def predict(self, batches: list, doc_ids: list[str]) -> dict:
            chunks = [index for batch in batches for index in batch.chunk_indices]
            if len(chunks) > 1 and any(doc_ids[index] == CUE for index in chunks):
                if kind == "oom":
                    with open(marks / "oom_attempts", "a") as handle:
                        handle.write("attempt\n")
                    os.kill(os.getpid(), signal.SIGKILL)
                if kind == "device" and first_time("device"):
                    raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return super().predict(batches, doc_ids)

    return FaultyTagger


CUE = "d00500"  # the document a fault waits for


def scenario(name: str, storage: Storage, model: Path, reference: Counter, s3) -> dict:
    output = storage.output(f"{name}-{int(time.time() * 1000)}")
    tag = lambda **changes: config(model, storage.input, output, **changes)  # noqa: E731
    marks = WORK / "marks" / output.rsplit("/", 1)[-1]
    marks.mkdir(parents=True, exist_ok=True)
    detail = {}
    injected_before = len(s3.proxy.injected) if s3 else 0
    if name == "reset":
        s3.proxy.inject("reset", r"GET /[^ ]*/corpus/a\.jsonl", 4, after_bytes=2000)
        outcome, _ = run_and_rerun(lambda: run(tag()), lambda: run(tag()))
        s3.proxy.heal()
        outcome = f"retried by the S3 client; {outcome}"
    elif name == "reset_persistent":
        s3.proxy.inject("reset", r"GET /[^ ]*/corpus/b\.jsonl .*range: bytes=[1-9]", 100_000)

        def rerun():
            s3.proxy.heal()
            return run(tag())
        outcome, _ = run_and_rerun(lambda: run(tag()), rerun)
        s3.proxy.heal()
    elif name == "throttle":
        s3.proxy.inject("throttle", r"PUT /[^ ]*/throttle-[0-9]+/", 12)
        outcome, _ = run_and_rerun(lambda: run(tag()), lambda: run(tag()))
        s3.proxy.heal()
        outcome = f"503 SlowDown retried; {outcome}"
    elif name == "eio":
        return eio_scenario(storage, model, reference, output)
    elif name in ("oom", "device"):
        outcome, summary = run_and_rerun(lambda: run(tag(), tagger=faulty_tagger(marks, name)), lambda: run(tag()))
        if name == "oom":
            detail["worker_killed_times"] = (marks / "oom_attempts").read_text().count("attempt")
        else:
            outcome = f"actor ended on the CUDA error and was replaced; {outcome}"
    elif name == "driver_killed":
        outcome = driver_killed(tag(), output)
    elif name == "changed_labels":
        run(tag())
        before = rows_of(output)
        try:
            run(tag(labels=["disease"]))
            outcome = "accepted (wrong)"
        except BadInput as error:
            outcome = f"refused, exit 2: {str(error)[:150]}"
        detail["output_changed"] = rows_of(output) != before
    else:
        raise ValueError(name)
    if s3 and len(s3.proxy.injected) > injected_before:
        detail["faults_injected"] = len(s3.proxy.injected) - injected_before
    return {"outcome": outcome, **compare(reference, output), **detail}


def driver_killed(tag: TagConfig, output: str) -> str:
    from conftest import kill_process_tree

    filesystem, path = fsspec.core.url_to_fs(output, use_listings_cache=False)
    command = [sys.executable, "-m", "ray_jobs.tag", "--model", tag.model, "--labels", ",".join(tag.labels), "--threshold", str(tag.threshold),
               "--input", tag.input, "--output", tag.output, f"batch_size={tag.batch_size}", f"units.documents={tag.units.documents}",
               f"units.retries={tag.units.retries}", "min_actors=1", "max_actors=1", f"cpus_per_actor={tag.cpus_per_actor}",
               f"torch_threads={tag.torch_threads}"]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and len(filesystem.glob(f"{path}/_done/*.json")) < 2:
        if process.poll() is not None:
            return f"the job ended (exit {process.returncode}) before it could be killed"
        time.sleep(0.1)
    kill_process_tree(process.pid)
    process.wait()
    done = len(filesystem.glob(f"{path}/_done/*.json"))
    summary = run(tag)
    return f"killed after {done} units; rerun: {summary['counts']['units_run']} run, {summary['counts']['units_skipped']} skipped, exit 0"


def eio_scenario(storage: Storage, model: Path, reference: Counter, output: str) -> dict:
    """The input folder served through a FUSE mount whose reads past b.jsonl's first byte fail with EIO 3 times."""
    try:
        from fuse import FUSE, FuseOSError, Operations
    except (ImportError, OSError) as error:
        return {"outcome": f"not run: no FUSE here ({error}); apt-get install libfuse2, pip install fusepy", "rows_lost": None, "rows_duplicated": None}

    class FlakyMount(Operations):
        def __init__(self, source: str, failures: int):
            self.source, self.failures, self.lock = source, failures, threading.Lock()

        def getattr(self, path, fh=None):
            info = os.lstat(self.source + path)
            return {key: getattr(info, key) for key in ("st_mode", "st_size", "st_nlink", "st_uid", "st_gid", "st_atime", "st_mtime", "st_ctime")}

        def readdir(self, path, fh):
            return [".", "..", *os.listdir(self.source + path)]

        def open(self, path, flags):
            return os.open(self.source + path, os.O_RDONLY)

        def read(self, path, size, offset, fh):
            with self.lock:
                if path.endswith("b.jsonl") and offset > 0 and self.failures > 0:  # b's second unit, not the planner's sample
                    self.failures -= 1
                    raise FuseOSError(errno.EIO)
            return os.pread(fh, size, offset)

        def release(self, path, fh):
            os.close(fh)

    mount = WORK / "mount"
    mount.mkdir(parents=True, exist_ok=True)
    operations = FlakyMount(storage.input, failures=3)
    thread = threading.Thread(target=lambda: FUSE(operations, str(mount), foreground=True, direct_io=True, ro=True, allow_other=True), daemon=True)
    thread.start()
    deadline = time.time() + 30
    while time.time() < deadline and not os.path.ismount(mount):
        time.sleep(0.1)
    try:
        outcome, _ = run_and_rerun(lambda: run(config(model, str(mount), output)), lambda: run(config(model, str(mount), output)))
        outcome = f"{3 - operations.failures} EIO reads retried; {outcome}"
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    return {"outcome": outcome, **compare_with_paths(reference, output, str(mount), storage.input)}


def compare_with_paths(reference: Counter, output: str, mounted: str, original: str) -> dict:
    """Error rows name their input file: read through the mount, they name the mount's path."""
    found = Counter({tuple(value.replace(mounted, original) for value in row): count for row, count in rows_of(output).items()})
    return {"rows_lost": sum((reference - found).values()), "rows_duplicated": sum((found - reference).values()), "rows": sum(found.values())}


def node_removed(model: Path, local_corpus: Path) -> dict:
    """A head without CPUs and two 2-CPU nodes; the node holding the model actor is removed after the first units."""
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.state import list_actors

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [cluster.add_node(num_cpus=2) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    output = str(WORK / "local" / f"node_removed-{int(time.time())}")
    result: dict = {}
    job = threading.Thread(target=lambda: result.update(summary=run(config(model, str(local_corpus), output))), daemon=True)
    try:
        job.start()
        deadline = time.time() + 600
        while time.time() < deadline and len(list(Path(output, "_done").glob("*.json"))) < 2:
            time.sleep(0.2)
        actor_nodes = {actor.node_id for actor in list_actors(filters=[("state", "=", "ALIVE")]) if "UnitTagger" in actor.class_name}
        victim = next((node for node in nodes if node.node_id in actor_nodes), None)
        if victim is not None:
            cluster.remove_node(victim, allow_graceful=False)
        job.join(timeout=900)
        summary = result.get("summary")
        outcome = ("the actor's node was removed; " if victim else "no actor node found to remove; ") + (
            f"the job finished on the remaining node; complete, exit 0 ({summary['counts']['units_run']} units)" if summary else "the job did not finish")
    finally:
        ray.shutdown()
        cluster.shutdown()
    return {"outcome": outcome, "output": output}


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated faults (default all: {','.join(FAULTS)})")
    parser.add_argument("--documents", type=int, default=3000)
    args = parser.parse_args()
    faults = args.only.split(",") if args.only else FAULTS

    import ray
    from conftest import free_port
    from s3_server import S3Server, environment
    from ray_jobs.runtime.ray_runtime import init_ray

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    model, local_corpus = tiny_model(WORK), corpus(WORK / "corpus", args.documents)
    server = S3Server(free_port())
    rows = []
    with environment(server.environment()):
        init_ray(num_cpus=2)  # after the S3 variables: the workers inherit them
        storages = {"local": Storage("local", local_corpus), "s3": Storage("s3", local_corpus, server)}
        references = {}
        for kind, storage in storages.items():
            run(config(model, storage.input, storage.output("reference")))
            references[kind] = rows_of(storage.output("reference"))
        for name in faults:
            kinds = {"reset": ["s3"], "reset_persistent": ["s3"], "throttle": ["s3"], "eio": ["local"], "node_removed": []}.get(name, ["local", "s3"])
            for kind in kinds:
                started = time.time()
                row = {"fault": name, "job": "tag", "storage": kind, **scenario(name, storages[kind], model, references[kind], server)}
                row["seconds"] = round(time.time() - started, 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
        if "node_removed" in faults:
            ray.shutdown()
            started = time.time()
            result = node_removed(model, local_corpus)
            row = {"fault": "node_removed", "job": "tag", "storage": "local", "outcome": result["outcome"],
                   **compare(references["local"], result["output"]), "seconds": round(time.time() - started, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    server.stop()
    ray.shutdown()

    print(f"\n{'fault':<17} {'storage':<7} {'lost':>5} {'dup':>5}  outcome")
    for row in rows:
        print(f"{row['fault']:<17} {row['storage']:<7} {str(row['rows_lost']):>5} {str(row['rows_duplicated']):>5}  {row['outcome']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() and args.only else []
    kept = [row for row in previous if row["fault"] not in faults]
    RESULTS.write_text(json.dumps(kept + rows, indent=2) + "\n")
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.documents} documents -> {RESULTS}")


if __name__ == "__main__":
    main()
