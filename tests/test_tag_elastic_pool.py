"""The tag job's model pool on a simulated cluster whose GPU nodes come and go: the head has one (logical) GPU, so the
pool starts with one actor; when a GPU node joins while units are still waiting (as an autoscaler adds one), the
pool grows onto it and both actors tag."""
import sys
import threading
import time

import pytest

from ray_jobs.tag import TagConfig, UnitTagger, run

pytestmark = [pytest.mark.ray, pytest.mark.cluster]


UNIT_SECONDS = 1.5  # 40 units: at least 60 s for one actor, so Ray Data's look at the new node (every 20 s) comes in time


class LogicalGpuTagger(UnitTagger):
    """Holds a (logical) GPU of the simulated cluster, and runs the model on the CPU, as this machine has no GPU. Each
    unit takes at least UNIT_SECONDS, as it would with a real model, so that the job outlasts Ray Data's look at the
    new node however fast the tiny model gets (61 units in 20 s once left the pool no time to grow)."""

    def load_model(self):
        from gliner import GLiNER

        return GLiNER.from_pretrained(self.config.model)

    def predict(self, batches: list, doc_ids: list[str]) -> dict:
        started = time.perf_counter()
        tagged = super().predict(batches, doc_ids)
        time.sleep(max(0.0, UNIT_SECONDS - (time.perf_counter() - started)))
        return tagged


def test_the_model_pool_grows_onto_a_node_that_joins_while_the_job_runs(trained_tiny_uni_dir, short_texts, tmp_path):
    import json

    import ray
    from ray.cluster_utils import Cluster

    corpus = tmp_path / "corpus.jsonl"  # 40 units of 250 documents
    texts = short_texts[:10_000]
    corpus.write_text("".join(json.dumps({"doc_id": f"d{index:05d}", "text": text}) + "\n" for index, text in enumerate(texts)))
    output = tmp_path / "out"
    config = TagConfig.model_validate({
        "model": str(trained_tiny_uni_dir), "labels": ["disease", "chemical"], "threshold": 0.15, "input": str(corpus),
        "output": str(output), "units": {"documents": 250}, "min_actors": 1, "max_actors": 2, "gpus_per_actor": 1,
        "cpus_per_actor": 0.25, "torch_threads": 1, "read_cpus": 0.5, "commit_cpus": 0.25, "batch_size": 32})
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this test module
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 1})
    try:
        ray.init(address=cluster.address)
        head = ray.get_runtime_context().get_node_id()
        result = {}
        job = threading.Thread(target=lambda: result.update(summary=run(config, tagger=LogicalGpuTagger)))
        job.start()
        deadline = time.time() + 300
        while not list((output / "_done").glob("*.json")) and job.is_alive():
            assert time.time() < deadline, "no unit finished in 300 s"
            time.sleep(0.2)
        assert job.is_alive(), "the job finished before the node joined"
        joined = cluster.add_node(num_cpus=1, num_gpus=1).node_id
        job.join(timeout=600)
        actors = result["summary"]["this_run"]["actors"]
        # Two at a time at most (max_actors); Ray Data may also retire an idle actor and start another later, so
        # more than two may have tagged over the run, each at least one unit.
        assert len(actors) >= 2 and all(actor["units"] >= 1 for actor in actors.values()), actors
        nodes = {marker["actor_node"] for marker in map(json.loads, map(lambda path: path.read_text(), (output / "_done").glob("*.json")))}
        assert nodes == {head, joined}
        assert result["summary"]["counts"]["documents"] == len(texts)
    finally:
        ray.shutdown()
        cluster.shutdown()
