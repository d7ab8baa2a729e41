"""`load_llm`'s cache of converted GGUF checkpoints: keyed by the file, written atomically, and can be turned off."""

import os

import torch
from conftest import tiny_llm
from transformers import AutoModelForCausalLM

from transformers_unicode.modeling.llm_utils import _write_cache, gguf_cache_folder


def test_the_cache_key_follows_the_file_and_the_switch(tmp_path, monkeypatch):
    checkpoint = tmp_path / "model.gguf"
    checkpoint.write_bytes(b"GGUF" + bytes(64))
    monkeypatch.setenv("TRANSFORMERS_UNICODE_CACHE", str(tmp_path / "cache"))
    first = gguf_cache_folder(str(tmp_path), "model.gguf")
    assert first.startswith(str(tmp_path / "cache" / "gguf" / "model-"))
    assert gguf_cache_folder(str(tmp_path), "model.gguf") == first
    checkpoint.write_bytes(b"GGUF" + bytes(65))  # another file under the same name: another entry
    assert gguf_cache_folder(str(tmp_path), "model.gguf") != first
    monkeypatch.setenv("TRANSFORMERS_UNICODE_CACHE", "")
    assert gguf_cache_folder(str(tmp_path), "model.gguf") is None


def test_a_cache_entry_loads_the_same_weights_and_appears_whole(tmp_path):
    llm = tiny_llm()
    llm.config.tie_word_embeddings = True
    llm.tie_weights()
    entry = tmp_path / "gguf" / "tiny-0123"
    _write_cache(str(entry), llm, None)
    _write_cache(str(entry), tiny_llm(seed=1), None)  # a second process finishing later changes nothing
    assert sorted(os.listdir(tmp_path / "gguf")) == ["tiny-0123"]  # no partial copy left behind
    loaded = AutoModelForCausalLM.from_pretrained(entry, dtype=torch.float32)
    ours, saved = llm.state_dict(), loaded.state_dict()
    assert ours.keys() == saved.keys() and all(torch.equal(ours[k], saved[k]) for k in ours)
    assert loaded.lm_head.weight.data_ptr() == loaded.get_input_embeddings().weight.data_ptr()
