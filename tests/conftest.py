from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def data_dir() -> Path:
    """The repository's `data/` folder (IOB corpora and NCBI-disease PubTator files)."""
    return DATA_DIR
