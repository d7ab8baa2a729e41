"""UniCodeVisualTokenizer through its public API: from_llm, encode/decode, losses, save/load, bad input."""

import pytest
import torch
from conftest import SPECIAL_IDS, VOCAB, tiny_tokenizer, tiny_tokenizer_config
from transformers import AutoModel

from transformers_unicode import UniCodeVisualTokenizer, UniCodeVisualTokenizerConfig

QUANTIZERS = ["vq", "rq", "hq", "mcq"]


def test_from_llm_copies_the_llm_rows_and_leaves_out_special_tokens(llm):
    tokenizer = UniCodeVisualTokenizer.from_llm(llm, tiny_tokenizer_config(num_visual_codes=VOCAB))
    ids = tokenizer.codebook.visual_ids
    assert ids.tolist() == [i for i in range(VOCAB) if i not in SPECIAL_IDS]
    table = llm.get_input_embeddings().weight
    assert torch.equal(tokenizer.codebook.embedding, table[ids])
    assert torch.equal(tokenizer.codebook.llm_embedding, table[ids])
    assert tokenizer.config.embedding_dim == table.shape[1] and tokenizer.config.vocab_size == VOCAB


def test_from_llm_subset_and_explicit_ids(llm):
    subset = UniCodeVisualTokenizer.from_llm(llm, tiny_tokenizer_config(num_visual_codes=10))
    ids = subset.codebook.visual_ids
    assert ids.numel() == 10 and ids[0] == 3 and ids[-1] == VOCAB - 1 and bool((ids[1:] > ids[:-1]).all())
    explicit = UniCodeVisualTokenizer.from_llm(llm, tiny_tokenizer_config(), visual_ids=[5, 7, 11])
    assert explicit.codebook.visual_ids.tolist() == [5, 7, 11] and explicit.config.num_visual_codes == 3
    with pytest.raises(ValueError, match="empty"):
        UniCodeVisualTokenizer.from_llm(llm, tiny_tokenizer_config(), visual_ids=[])
    with pytest.raises(ValueError, match="vocabulary"):
        UniCodeVisualTokenizer.from_llm(llm, tiny_tokenizer_config(), visual_ids=[5, VOCAB])


def test_from_llm_loads_a_saved_llm_folder(tmp_path, llm):
    llm.save_pretrained(tmp_path / "llm")
    tokenizer = UniCodeVisualTokenizer.from_llm(str(tmp_path / "llm"), tiny_tokenizer_config())
    assert torch.equal(tokenizer.codebook.llm_embedding[0], llm.get_input_embeddings().weight[3])


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_encode_decode_shapes(quantizer, pixels):
    tokenizer = tiny_tokenizer(quantizer).eval()
    codes = tokenizer.encode(pixels).codes
    depth = {"vq": 1, "rq": 4, "hq": 5, "mcq": 4}[quantizer]
    assert codes.shape == (3, 2, 2, depth) and codes.dtype == torch.long
    decoded = tokenizer.decode(codes)
    assert decoded.shape == pixels.shape and decoded.min() >= -1 and decoded.max() <= 1
    assert tokenizer.aggregate(codes).shape == (3, 2, 2, tokenizer.config.embedding_dim)
    assert tokenizer.config.tokens_per_image == 2 * 2 * depth


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_forward_loss_trains_encoder_through_the_quantizer(quantizer, pixels):
    tokenizer = tiny_tokenizer(quantizer)
    output = tokenizer(pixels)
    assert torch.isfinite(output.loss) and output.reconstruction.shape == pixels.shape
    output.loss.backward()
    assert tokenizer.encoder.conv_in.weight.grad.abs().sum() > 0  # straight-through reaches the encoder
    assert all(not isinstance(b, torch.nn.Parameter) for b in tokenizer.codebook.buffers())


def test_a_few_steps_lower_the_loss(pixels):
    tokenizer = tiny_tokenizer("rq", dead_code_threshold=0.5)
    optimizer = torch.optim.Adam(tokenizer.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = tokenizer(pixels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_save_load_round_trip_is_bit_exact_with_ema_state(tmp_path, pixels):
    tokenizer = tiny_tokenizer("rq", num_visual_codes=30)
    for _ in range(3):  # move the EMA statistics away from their initial values
        tokenizer(pixels).loss.backward()
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    for loaded in (UniCodeVisualTokenizer.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path)):
        assert isinstance(loaded, UniCodeVisualTokenizer)
        expected, actual = tokenizer.state_dict(), loaded.state_dict()
        assert expected.keys() == actual.keys()
        for key in expected:
            assert torch.equal(expected[key], actual[key]), key
        for name in ("cluster_size", "embed_sum", "embedding", "llm_embedding", "visual_ids"):
            assert any(k.endswith("codebook." + name) for k in actual)
        tokenizer.eval(), loaded.eval()
        assert torch.equal(tokenizer.encode(pixels).codes, loaded.encode(pixels).codes)
        assert torch.equal(
            tokenizer.decode(tokenizer.encode(pixels).codes), loaded.decode(loaded.encode(pixels).codes)
        )


def test_attention_projection_variant(pixels):
    tokenizer = tiny_tokenizer("mcq", projection="attention", projection_heads=2)
    output = tokenizer(pixels)
    output.loss.backward()
    assert tokenizer.quant_proj.qkv.weight.grad is not None


def test_adversarial_terms_move_each_network_only_through_its_own_loss(pixels):
    tokenizer = tiny_tokenizer("rq", adversarial_weight=0.5, discriminator_channels=8)
    output = tokenizer(pixels)
    assert output.generator_loss is not None and output.discriminator_loss is not None
    output.loss.backward()
    total_disc_grad = [p.grad.clone() for p in tokenizer.discriminator.parameters()]
    # the discriminator's gradient is exactly that of its own hinge loss
    tokenizer.zero_grad()
    reconstruction = output.reconstruction.detach()
    _, disc_loss = tokenizer._adversarial_losses(reconstruction, pixels)
    disc_loss.backward()
    for full, own in zip(total_disc_grad, tokenizer.discriminator.parameters(), strict=True):
        assert torch.allclose(full, own.grad, atol=1e-6)


def test_perceptual_term_reads_a_torchscript_file(tmp_path, pixels):
    network = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()))
    path = tmp_path / "features.pt"
    network.save(str(path))
    tokenizer = tiny_tokenizer("vq", perceptual_weight=1.0, perceptual_model_path=str(path))
    output = tokenizer(pixels)
    assert output.perceptual_loss is not None and output.perceptual_loss > 0
    with pytest.raises(ValueError, match="TorchScript file on disk"):
        tiny_tokenizer("vq", perceptual_weight=1.0, perceptual_model_path=str(tmp_path / "missing.pt"))


@pytest.mark.parametrize(
    "pixels_in,match",
    [
        (torch.zeros(1, 1, 16, 16), "channels"),
        (torch.zeros(1, 4, 16, 16), "channels"),
        (torch.zeros(1, 3, 15, 16), "resize"),
        (torch.zeros(3, 16, 16), r"\(B, 3, 16, 16\)"),
        (torch.full((1, 3, 16, 16), float("nan")), "NaN"),
    ],
)
def test_bad_pixels_give_clear_errors(pixels_in, match):
    with pytest.raises(ValueError, match=match):
        tiny_tokenizer("rq").encode(pixels_in)


def test_decode_rejects_codes_that_are_not_visual_ids():
    tokenizer = tiny_tokenizer("rq", num_visual_codes=20)
    good = tokenizer.encode(torch.zeros(1, 3, 16, 16)).codes
    bad = good.clone()
    bad[0, 0, 0, 0] = 1  # a special token
    with pytest.raises(ValueError, match="not visual ids"):
        tokenizer.decode(bad)
    with pytest.raises(ValueError, match=r"\(B, 2, 2, 4\)"):
        tokenizer.decode(good[..., :3])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(quantizer="pq"), "quantizer must be one of"),
        (dict(image_size=16, patch_size=3), "must divide"),
        (dict(image_size=16, latent_size=3), "encoder blocks"),
        (dict(quantizer="mcq", embedding_dim=30, codes_per_position=4), "divisor"),
        (dict(num_visual_codes=0), "num_visual_codes"),
        (dict(codebook_decay=1.0), "codebook_decay"),
    ],
)
def test_bad_configs_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UniCodeVisualTokenizerConfig(
            **{**dict(image_size=16, latent_size=2, patch_size=2, block_out_channels=(8, 8, 8)), **kwargs}
        )


def test_hq_and_vq_fix_their_depth():
    assert tiny_tokenizer_config("hq").codes_per_position == 5
    assert tiny_tokenizer_config("vq").codes_per_position == 1


def test_a_unified_codebook_is_saved_without_its_copies_and_loads_back_exactly(tmp_path, pixels):
    """Issue 15: with C = C_L the file holds C_L and the EMA counts only; both load paths rebuild C exactly."""
    from safetensors.torch import load_file

    tokenizer = tiny_tokenizer("rq", num_visual_codes=30)  # from_llm: C = C_L
    codebook = tokenizer.codebook
    codebook.cluster_size.copy_(torch.rand_like(codebook.cluster_size) + 0.5)  # counts a frozen run carries
    codebook.set_embedding(codebook.llm_embedding)
    tokenizer.save_pretrained(tmp_path / "unified")
    stored = load_file(tmp_path / "unified" / "model.safetensors")
    assert "quantizer.codebook.embedding" not in stored and "quantizer.codebook.embed_sum" not in stored
    assert "quantizer.codebook.llm_embedding" in stored
    assert UniCodeVisualTokenizer.from_pretrained(tmp_path / "unified").config.codebook_storage == "llm_rows"
    fresh = tiny_tokenizer("rq", num_visual_codes=30, seed=1)
    fresh.load_state_dict(stored)  # what a Trainer resume does: strict, and nothing is missing
    for loaded in (UniCodeVisualTokenizer.from_pretrained(tmp_path / "unified"), fresh):
        for key, value in tokenizer.state_dict().items():
            assert torch.equal(value, loaded.state_dict()[key]), key

    for _ in range(2):  # the EMA moves C off the table: everything is stored again
        tokenizer(pixels).loss.backward()
    assert not tokenizer.is_unified()
    tokenizer.save_pretrained(tmp_path / "own")
    assert "quantizer.codebook.embedding" in load_file(tmp_path / "own" / "model.safetensors")
    assert UniCodeVisualTokenizer.from_pretrained(tmp_path / "own").config.codebook_storage == "own"


def test_a_unified_tokenizer_can_refer_to_the_llms_table_instead_of_storing_it(tmp_path, pixels):
    """Issue 15: `refer_to_llm=True` stores no codebook table at all; loading reads C_L from the LLM again."""
    import os

    from conftest import tiny_llm
    from safetensors.torch import load_file

    tiny_llm().save_pretrained(tmp_path / "llm")
    tokenizer = UniCodeVisualTokenizer.from_llm(
        str(tmp_path / "llm"), tiny_tokenizer_config(num_visual_codes=30)
    )
    assert tokenizer.config.llm_name_or_path == str(tmp_path / "llm")  # from_llm(path) records where it loads
    tokenizer.eval()  # encoding in training mode would move C by EMA
    tokenizer.save_pretrained(tmp_path / "rows")
    tokenizer.save_pretrained(tmp_path / "refer", refer_to_llm=True)
    stored = load_file(tmp_path / "refer" / "model.safetensors")
    assert not any(key.startswith("quantizer.codebook.") and "embed" in key for key in stored), sorted(stored)
    saved = os.path.getsize(tmp_path / "rows" / "model.safetensors") - os.path.getsize(
        tmp_path / "refer" / "model.safetensors"
    )
    assert saved >= 30 * tokenizer.config.embedding_dim * 4  # C_L's K x c float32 values

    codes = tokenizer.encode(pixels).codes
    for loaded in (
        UniCodeVisualTokenizer.from_pretrained(tmp_path / "refer"),  # loads the LLM from the config's path
        UniCodeVisualTokenizer.from_pretrained(tmp_path / "refer", llm=tiny_llm()),  # or takes it loaded
        AutoModel.from_pretrained(tmp_path / "refer"),
    ):
        for key, value in tokenizer.state_dict().items():
            assert torch.equal(value, loaded.state_dict()[key]), key
        assert torch.equal(loaded.encode(pixels).codes, codes)

    with pytest.raises(ValueError, match="not the ones it was saved with"):
        UniCodeVisualTokenizer.from_pretrained(tmp_path / "refer", llm=tiny_llm(seed=1))
    with pytest.raises(ValueError, match="embedding table"):
        UniCodeVisualTokenizer.from_pretrained(tmp_path / "refer", llm=tiny_llm(vocab_size=64))
    (tmp_path / "llm" / "model.safetensors").unlink()
    with pytest.raises(OSError, match="did not load.*llm="):
        UniCodeVisualTokenizer.from_pretrained(tmp_path / "refer")

    tokenizer.train()
    for _ in range(2):  # the EMA moves C off the table: nothing to refer to
        tokenizer(pixels).loss.backward()
    with pytest.raises(ValueError, match="is not:"):
        tokenizer.save_pretrained(tmp_path / "moved", refer_to_llm=True)
    without_source = tiny_tokenizer("rq", num_visual_codes=30)
    with pytest.raises(ValueError, match="llm_name_or_path"):
        without_source.save_pretrained(tmp_path / "nowhere", refer_to_llm=True)
