"""The local transformers backend on the tiny model: left-padded batches equal one-by-one greedy
output, rows stop at the end of a sentence, a LoRA adapter folder loads, the cache is used."""

from __future__ import annotations

import shutil

import pytest
import torch

from steper_bench.generation.base import StepRequest
from steper_bench.generation.local import make
from steper_bench.reasoning.answers import first_sentence
from steper_bench.recipe import GeneratorConfig
from steper_bench.records import Question

Q = Question(id="q", dataset="hotpotqa", question="Where?", answers=["Paris"], paragraphs=[])

PROMPTS = [
    "Q: Who directed the film?\nA:",
    "Wikipedia Title: Ed Wood\nEdward Davis Wood Jr. was an American filmmaker.\n\nQ: Were they of the same nationality?\nA:",
    "Q: Which city?\nA: It is in France.",
    "Q: What year?\nA:",
    "Wikipedia Title: Step Up (film)\nStep Up is a 2006 American romantic dance film.\n\nQ: Which film?\nA:",
]


def _req(prompt: str, sample_index: int = 0) -> StepRequest:
    """A request as the IRCoT loop makes it: IRCoT's stop sequences and step-complete rule."""
    from steper_bench.reasoning.frameworks import get_framework

    fw = get_framework("ircot")
    return StepRequest(prompt=prompt, question=Q, context=[], previous=[], sample_index=sample_index,
                       stop=list(fw.stop), complete=fw.complete, framework=fw)


def _gen(model_dir, cache=None, max_new_tokens=24, **cfg):
    return make(GeneratorConfig(backend="transformers", model=str(model_dir), device="cpu", **cfg),
                cache=cache, max_new_tokens=max_new_tokens)


def test_batched_equals_one_by_one(tiny_model_dir):
    g = _gen(tiny_model_dir, batch_size=4)  # 5 prompts: a chunk of 4, then 1
    batched = g.generate([_req(p) for p in PROMPTS])
    single = [g.generate([_req(p)])[0] for p in PROMPTS]
    assert [r.text for r in batched] == [r.text for r in single]
    assert all(r.tokens > 0 and r.latency_s > 0 for r in batched)
    assert g.identity.backend == "transformers" and g.identity.model == str(tiny_model_dir)


def test_sampling_is_seeded(tiny_model_dir):
    a = _gen(tiny_model_dir, temperature=1.0, seed=3).generate([_req(p) for p in PROMPTS])
    b = _gen(tiny_model_dir, temperature=1.0, seed=3).generate([_req(p) for p in PROMPTS])
    greedy = _gen(tiny_model_dir).generate([_req(p) for p in PROMPTS])
    assert [r.text for r in a] == [r.text for r in b]
    assert [r.text for r in a] != [r.text for r in greedy]


@pytest.fixture(scope="module")
def parrot_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model overfit on one chain, so its greedy continuation is known."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("parrot")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    text = "Q: Where?\nA: Paris is big. So the answer is: Paris. Then more text follows here and on and on."
    ids = tok(text, return_tensors="pt")["input_ids"]
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_stops_at_end_of_sentence(parrot_dir):
    g = _gen(parrot_dir, max_new_tokens=40)
    [res] = g.generate([_req("Q: Where?\nA:")])
    # It stops right after the answer sentence (one look-ahead token), not at max_new_tokens.
    assert res.text.startswith("Paris is big. So the answer is: Paris.")
    assert "follows" not in res.text and res.tokens < 40
    assert first_sentence(res.text) == "Paris is big. So the answer is: Paris."


def test_lora_adapter_loads(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(1)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    assert (adapter / "adapter_config.json").exists()
    shutil.copy(tiny_model_dir / "tokenizer.json", adapter / "tokenizer.json")
    shutil.copy(tiny_model_dir / "tokenizer_config.json", adapter / "tokenizer_config.json")

    g = _gen(adapter, max_new_tokens=8)
    assert not hasattr(g.model, "peft_config")  # merged into the base weights
    # The merged weights are the adapted ones: same logits as the PEFT model itself.
    enc = g.tokenizer(["Q: Which city?\nA:"], return_tensors="pt")
    with torch.no_grad():
        merged = g.model(**enc).logits
        expected = peft_model.eval()(**enc).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir)(**enc).logits
    assert torch.allclose(merged, expected, atol=1e-4)
    assert not torch.allclose(merged, plain, atol=1e-4)


def test_request_cache_reused(tiny_model_dir, tmp_path):
    from steper_bench.cache import RequestCache

    cache = RequestCache(tmp_path / "cache.sqlite")
    first = _gen(tiny_model_dir, cache=cache).generate([_req(p) for p in PROMPTS[:3]])
    again = _gen(tiny_model_dir, cache=cache)
    second = again.generate([_req(p) for p in PROMPTS[:3]] + [_req(PROMPTS[0], sample_index=1)])
    assert [r.text for r in second[:3]] == [r.text for r in first]
    assert [r.cached for r in second] == [True, True, True, False]
    assert again.stats["cache_hits"] == 3


def test_text_is_cut_before_the_first_stop_sequence():
    from steper_bench.generation.local import cut_at_stop

    assert cut_at_stop("Follow up: A?\nIntermediate answer: B", ["\nIntermediate answer:", "\n\n"]) == "Follow up: A?"
    assert cut_at_stop("\n So the answer is: X.\nQ: next", ["\n"]) == "So the answer is: X."  # leading blank kept out
    assert cut_at_stop("no stop here", ["\n"]) == "no stop here"
