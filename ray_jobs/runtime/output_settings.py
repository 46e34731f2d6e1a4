"""OUTPUT/_SETTINGS.json: the settings that decide an output's rows, recorded by the first run into it.

A resumed run adds units to what earlier runs committed, so it must make its rows the way they did: a rerun whose
settings differ (another model or weights, other labels, another threshold or prompt) is refused with what differs,
instead of finishing an output that mixes two runs. Settings that only decide speed or placement (actors, batch
sizes, unit sizes: those are guarded by the unit ids) are not recorded. Batch sizes can move a score in its last
bits (about 1e-6: which windows share a batch changes the padding), which flips only an entity that close to the
threshold; they stay free so that a run that ran out of device memory can resume with smaller batches. An output
made before this file existed gets it recorded by its next run.
"""
from __future__ import annotations

import json

from .job_command import BadInput
from .output_root import OutputRoot

SETTINGS_FILE = "_SETTINGS.json"


def require_same_settings(output: OutputRoot, settings: dict) -> None:
    """Record `settings` in a new output; in an existing one, BadInput naming each setting that differs."""
    settings = json.loads(json.dumps(settings, default=str))  # as they read back from JSON
    recorded = output.read_json(SETTINGS_FILE)
    if recorded is None:
        output.write_json(SETTINGS_FILE, settings)
        return
    differing = sorted(key for key in recorded.keys() | settings.keys() if recorded.get(key) != settings.get(key))
    if differing:
        changes = "; ".join(f"{key}: {_short(recorded.get(key))} before, {_short(settings.get(key))} now" for key in differing)
        raise BadInput(f"{output.url()} was made with other settings ({changes}); its rows would mix two runs. Rerun with "
                       f"the settings in {output.url(SETTINGS_FILE)}, or start afresh: overwrite=true, or another output")


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
