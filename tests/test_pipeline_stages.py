"""The pipeline's stage table names real jobs: each module has its config class and the function the pipeline calls."""
import importlib
import inspect

import pytest

from ray_jobs.job_config import Section
from ray_jobs.pipeline import JOBS, STAGES


def test_every_stage_has_a_job():
    assert set(JOBS) == set(STAGES)


@pytest.mark.parametrize("stage", STAGES)
def test_stage_resolves_to_a_config_class_and_a_run_function(stage):
    module_name, config_class = JOBS[stage]
    module = importlib.import_module(f"ray_jobs.{module_name}")
    assert issubclass(getattr(module, config_class), Section)
    assert list(inspect.signature(module.run).parameters)[:2] == ["config", "address"]
