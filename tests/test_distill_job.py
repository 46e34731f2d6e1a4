"""The distill job on a real local Ray: a tiny random Llama learns NCBI-disease gold annotations (the "teacher") with
LoRA, 2 Ray Train workers, DeepSpeed ZeRO-2 over gloo; the merged model then loads in transformers and in vLLM."""
import json
import os
import subprocess
import sys
import textwrap

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from gliner.evaluation.pubtator import read_pubtator
from ray_jobs.distill import main, parse_args
from corpus.contracts import ANNOTATIONS_SCHEMA, DOCUMENTS_SCHEMA
from synth.prompts import load_prompt
from synth.sft_pairs import gold_pubtator_annotations
from synth.tiny_llm import build_tiny_llm

PROMPT_FILE = "configs/annotate/prompt_biomed.yaml"
TRAIN_DOCUMENTS = 16
VLLM_SCRIPT = textwrap.dedent("""
    import json
    import sys

    if __name__ == "__main__":  # vLLM spawns its engine core, which re-imports this file
        from vllm import LLM, SamplingParams

        llm = LLM(model=sys.argv[1], enforce_eager=True, dtype="float32", max_model_len=2048, seed=0)
        outputs = llm.generate({"prompt_token_ids": json.loads(sys.argv[2])}, SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True))
        print("GENERATED " + json.dumps(list(outputs[0].outputs[0].token_ids)))
""")


@pytest.fixture(scope="module")
def ncbi(data_dir):
    return {split: read_pubtator(data_dir / f"ncbi-disease-pubtator/{split}.pubtator") for split in ("train", "devel", "test")}


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, ncbi):
    """The tiny random Llama with final-norm gain 8, so that LoRA adapters on the frozen base can fit the answers."""
    return build_tiny_llm(tmp_path_factory.mktemp("student"), [doc.text for split in ncbi.values() for doc in split], final_norm_gain=8.0)


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory, ncbi):
    """The contracts' Parquet files: gold annotations of 16 train abstracts, plus a failed row and an orphan row."""
    directory = tmp_path_factory.mktemp("teacher")
    documents, annotations = gold_pubtator_annotations(ncbi["train"][:TRAIN_DOCUMENTS])
    annotations.append({"doc_id": documents[0]["doc_id"], "model": "teacher", "raw_output": "{\"entities\":[{\"id\":0,",
                        "entities": [], "relations": [], "error": "truncated_json: Expecting value at char 22"})
    annotations.append({"doc_id": "no-such-document", "model": "teacher", "raw_output": None, "entities": [], "relations": [], "error": None})
    pq.write_table(pa.Table.from_pylist(documents, DOCUMENTS_SCHEMA), directory / "documents.parquet")
    (directory / "annotations").mkdir()
    pq.write_table(pa.Table.from_pylist(annotations, ANNOTATIONS_SCHEMA), directory / "annotations/part-0.parquet")
    return directory


@pytest.mark.ray
@pytest.mark.vllm
def test_two_workers_zero2_loss_falls_resumes_and_merged_model_loads_in_vllm(local_ray, tmp_path, student_dir, teacher_files, ncbi, pytestconfig):
    output = tmp_path / "out"
    argv = ["--config", str(pytestconfig.rootpath / "configs/distill/tiny_cpu.yaml"),
            "--documents", str(teacher_files / "documents.parquet"), "--annotations", str(teacher_files / "annotations"),
            "--base-model", str(student_dir), "--output", str(output), "--max-steps", "30", "--num-workers", "2",
            f"data.prompt={pytestconfig.rootpath / PROMPT_FILE}", "log_every=5", "checkpoint_every=10",
            "fail_at_step=15", "max_failures=1"]
    assert main(argv) == 0
    summary = json.loads((output / "_SUMMARY.json").read_text())

    pairs = summary["pairs"]
    assert pairs["annotation_rows"] == TRAIN_DOCUMENTS + 2 and pairs["pairs"] == TRAIN_DOCUMENTS
    assert pairs["skipped"].pop("annotation_error") == 1 and pairs["skipped"].pop("missing_document") == 1
    assert pairs["trained"] + pairs["skipped"].pop("too_long", 0) == TRAIN_DOCUMENTS and not pairs["skipped"]
    assert summary["steps"] == 30 and summary["metrics"]["resumed_from_step"] == 10  # restarted from the step-10 checkpoint
    losses = dict((step, loss) for step, loss in summary["loss_history"])
    assert sorted(losses) == [5, 10, 15, 20, 25, 30]
    assert losses[30] < 0.6 * losses[5], summary["loss_history"]

    input_ids = _prompt_ids(student_dir, load_prompt(pytestconfig.rootpath / PROMPT_FILE), ncbi["train"][0].title)
    merged_ids = _check_adapter_and_merged_model(student_dir, output, input_ids)
    assert _vllm_greedy_ids(output / "merged", input_ids, tmp_path) == merged_ids


def _prompt_ids(model_dir, prompt, text: str) -> list[int]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    rendered = tokenizer.apply_chat_template(prompt.messages(text), add_generation_prompt=True, tokenize=False)
    return tokenizer(rendered, add_special_tokens=False)["input_ids"]


def _check_adapter_and_merged_model(base_dir, output, input_ids: list[int]) -> list[int]:
    """The adapter loads with peft, the merged model with transformers, and both compute the same logits."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert {"adapter_config.json", "adapter_model.safetensors"} <= {path.name for path in (output / "adapter").iterdir()}
    assert (output / "merged/model.safetensors").exists() and (output / "merged/tokenizer.json").exists()
    inputs = torch.tensor([input_ids])
    base = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    with torch.no_grad():
        base_logits = base(inputs).logits
        peft_logits = PeftModel.from_pretrained(base, str(output / "adapter")).eval()(inputs).logits
        merged = AutoModelForCausalLM.from_pretrained(output / "merged").eval()
        merged_logits = merged(inputs).logits
        generated = merged.generate(inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)[0, len(input_ids):]
    assert (peft_logits - base_logits).abs().max() > 1.0  # the adapters learned something
    torch.testing.assert_close(merged_logits, peft_logits, atol=1e-4, rtol=1e-4)
    return generated.tolist()


def _vllm_greedy_ids(model_dir, input_ids: list[int], tmp_path) -> list[int]:
    script = tmp_path / "vllm_generate.py"
    script.write_text(VLLM_SCRIPT)
    completed = subprocess.run([sys.executable, str(script), str(model_dir), json.dumps(input_ids)], capture_output=True,
                               text=True, timeout=400, env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"})
    lines = [line for line in completed.stdout.splitlines() if line.startswith("GENERATED ")]
    assert completed.returncode == 0 and lines, completed.stderr[-3000:]
    return json.loads(lines[-1].removeprefix("GENERATED "))


def test_config_flags_overrides_and_errors(tmp_path, pytestconfig):
    argv = ["--config", str(pytestconfig.rootpath / "configs/distill/tiny_cpu.yaml"), "--documents", "d", "--annotations", "a", "--base-model", "m",
            "--output", str(tmp_path / "o"), "--max-steps", "7", "--num-workers", "1", "lora.r=4", "scale.zero_stage=0"]
    config, address = parse_args(argv + ["--address", "ray://head:10001"])
    assert (config.data.documents, config.data.annotations, config.model.base, config.max_steps) == ("d", "a", "m", 7)
    assert (config.scale.num_workers, config.lora.r, config.scale.zero_stage, address) == (1, 4, 0, "ray://head:10001")
    assert config.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    with pytest.raises(ValueError, match="fp16 is not supported"):
        parse_args(argv + ["scale.precision=fp16"])
    with pytest.raises(ValueError, match="ZeRO stage 3 is not supported"):
        parse_args(argv + ["scale.zero_stage=3"])
    with pytest.raises(ValueError, match="file-system path"):
        parse_args(argv + ["output=s3://bucket/distill"])
    with pytest.raises(ValueError, match="rank"):
        parse_args(argv + ["lora.rank=8"])
    gpu, _ = parse_args(["--config", str(pytestconfig.rootpath / "configs/distill/openbiollm_8b_lora.yaml")])
    assert (gpu.scale.precision, gpu.scale.zero_stage, gpu.scale.use_gpu, gpu.lora.r, gpu.lora.alpha) == ("bf16", 2, True, 16, 32)
    assert gpu.data.end_token == "<|eot_id|>" and gpu.optim.lr == 2e-4
