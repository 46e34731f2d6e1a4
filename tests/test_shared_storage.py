"""The shared-storage check's parts: which local paths it probes, and the per-node probe itself (a zero-CPU task
pinned to each alive node). Every node of a cluster seeing the paths is tested on simulated multi-node clusters
(test_node_failure.py, where each job runs the check)."""
import pytest

from ray_jobs.runtime.shared_storage import _existing_prefix, _unseen_by_node, is_url, require_shared_storage


def test_urls_are_shared_and_inputs_are_looked_for_up_to_their_first_wildcard(tmp_path):
    assert is_url("s3://bucket/out") and is_url("gs://b/x") and not is_url("file:///mnt/shared/x") and not is_url("/mnt/x")
    (tmp_path / "corpus").mkdir()
    assert _existing_prefix(str(tmp_path / "corpus" / "*.jsonl")) == str(tmp_path / "corpus")
    assert _existing_prefix(str(tmp_path / "corpus")) == str(tmp_path / "corpus")
    assert _existing_prefix("Ihor/gliner-biomed-bi-small-v1.0") is None  # a hub id, not a path here
    assert _existing_prefix(str(tmp_path / "missing" / "file.parquet")) is None


@pytest.mark.ray
def test_each_node_reports_the_paths_it_cannot_see_and_one_node_needs_no_probe(local_ray, tmp_path):
    import ray

    nodes = [node for node in ray.nodes() if node["Alive"]]
    present, absent = tmp_path / "present", tmp_path / "absent"
    present.mkdir()
    unseen = _unseen_by_node(nodes, [str(present), str(absent)])
    assert list(unseen.values()) == [[str(absent)]] and len(unseen) == len(nodes) == 1
    require_shared_storage(outputs=[str(tmp_path / "out")], inputs=[str(absent)])  # one node: nothing to check
    assert not (tmp_path / "out").exists()  # and nothing made
