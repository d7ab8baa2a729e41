"""The nearest-code search, the unified codebook and the four quantizers, through their public API."""

import pytest
import torch
from conftest import SPECIAL_IDS, VOCAB, tiny_llm, tiny_tokenizer

from transformers_unicode import (
    HierarchicalQuantizer,
    MultiCodebookQuantizer,
    ResidualQuantizer,
    UnifiedCodebook,
    VectorQuantizer,
    nearest_code_search,
)

QUANTIZERS = ["vq", "rq", "hq", "mcq"]


def brute_force(queries, codebook):
    return torch.cdist(queries.double(), codebook.double()).argmin(dim=1)


@pytest.mark.parametrize(
    "num_queries,num_codes,dim,tile_elements,tile_rows",
    [
        (300, 257, 16, 1 << 24, 4096),  # one tile
        (300, 257, 16, 1000, 37),  # many ragged tiles in both directions
        (1, 5, 3, 4, 1),
        (513, 1024, 64, 4096, 64),
    ],
)
def test_search_equals_brute_force(num_queries, num_codes, dim, tile_elements, tile_rows):
    generator = torch.Generator().manual_seed(num_queries + num_codes)
    queries = torch.randn(num_queries, dim, generator=generator)
    codebook = torch.randn(num_codes, dim, generator=generator)
    ours = nearest_code_search(queries, codebook, tile_elements=tile_elements, tile_rows=tile_rows)
    assert ours.dtype == torch.long and ours.shape == (num_queries,)
    assert torch.equal(ours, brute_force(queries, codebook))


def test_search_keeps_first_of_tied_codes_across_tiles():
    codebook = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # rows 0 and 2 identical
    queries = torch.tensor([[0.9, 0.1]])
    assert nearest_code_search(queries, codebook, tile_elements=1, tile_rows=1).item() == 0


def test_search_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same c"):
        nearest_code_search(torch.randn(4, 3), torch.randn(5, 4))


def make_codebook(num_groups=1, decay=0.5, ids=None, dim=4):
    ids = torch.tensor([3, 5, 9]) if ids is None else ids
    table = torch.arange(ids.numel() * dim, dtype=torch.float32).view(ids.numel(), dim)
    return UnifiedCodebook(table, ids, vocab_size=16, num_groups=num_groups, decay=decay)


def test_ema_update_matches_hand_computation():
    codebook = make_codebook(decay=0.5)  # rows e_0=[0,1,2,3], e_1=[4,5,6,7], e_2=[8,9,10,11]; N_k = 1
    z = torch.tensor([[2.0, 2.0, 2.0, 2.0], [4.0, 4.0, 4.0, 4.0], [10.0, 10.0, 10.0, 10.0]])
    rows = torch.tensor([0, 0, 2])
    codebook.train()
    codebook.update(z, rows)
    # N_0 = .5*1 + .5*2 = 1.5, m_0 = .5*[0,1,2,3] + .5*([2,2,2,2]+[4,4,4,4]) = [3, 3.5, 4, 4.5]
    assert torch.allclose(codebook.cluster_size[0], torch.tensor([1.5, 0.5, 1.0]))
    assert torch.allclose(codebook.embedding[0], torch.tensor([3.0, 3.5, 4.0, 4.5]) / 1.5)
    # unused code: N_1 = .5, m_1 = .5 * e_1 -> e_1 unchanged
    assert torch.allclose(codebook.embedding[1], torch.tensor([4.0, 5.0, 6.0, 7.0]))
    # N_2 = 1, m_2 = .5*[8,9,10,11] + .5*[10,10,10,10]
    assert torch.allclose(codebook.embedding[2], torch.tensor([9.0, 9.5, 10.0, 10.5]))


def test_ema_is_off_in_eval_and_frozen_mode():
    codebook = make_codebook()
    before = codebook.embedding.clone()
    codebook.eval()
    codebook.update(torch.ones(2, 4), torch.tensor([0, 1]))
    codebook.train()
    codebook.ema_enabled = False
    codebook.update(torch.ones(2, 4), torch.tensor([0, 1]))
    assert torch.equal(codebook.embedding, before)


def test_pull_toward_table_is_eq3_and_persists_through_ema():
    codebook = make_codebook(decay=0.9)
    codebook.set_embedding(torch.zeros(3, 4))
    codebook.pull_toward(codebook.llm_embedding, decay=0.75)
    assert torch.allclose(codebook.embedding, 0.25 * codebook.llm_embedding)
    # an EMA step with no data for a code leaves the pulled row where the pull put it
    codebook.train()
    codebook.update(torch.zeros(1, 4), torch.tensor([0]))
    assert torch.allclose(codebook.embedding[1:], 0.25 * codebook.llm_embedding[1:])


def test_dead_codes_restart_on_batch_vectors():
    codebook = UnifiedCodebook(
        torch.zeros(3, 2), torch.tensor([1, 2, 3]), vocab_size=8, decay=0.5, dead_code_threshold=0.8
    )
    codebook.train()
    z = torch.tensor([[5.0, 5.0]])
    codebook.update(z, torch.tensor([0]))  # codes 1 and 2 decay to N = 0.5 < 0.8: dead
    assert torch.equal(codebook.embedding[1], z[0]) and torch.equal(codebook.embedding[2], z[0])
    assert codebook.health()["codebook/dead_codes"] == 0


def test_dead_codes_can_restart_on_their_own_llm_rows():
    """Issue 15: with dead_code_restart="llm" a restart puts the row back onto C_L, not onto an encoder output."""
    table = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    codebook = UnifiedCodebook(
        table,
        torch.tensor([1, 2, 3]),
        vocab_size=8,
        decay=0.5,
        dead_code_threshold=0.8,
        dead_code_restart="llm",
    )
    codebook.train()
    z = torch.tensor([[5.0, 5.0]])
    codebook.pull_toward(torch.full((3, 2), 9.0), decay=0.0)  # move every row off the table first
    codebook.update(z, torch.tensor([0]))  # codes 1 and 2 decay to N = 0.5 < 0.8: dead
    assert torch.equal(
        codebook.embedding[0], torch.tensor([7.0, 7.0])
    )  # the live code's EMA: (0.5*9 + 0.5*5) / 1
    assert torch.equal(codebook.embedding[1:], table[1:])  # the dead ones are back on their LLM rows
    assert torch.equal(codebook.embed_sum[1:], table[1:])  # and stay there through the next EMA step
    assert codebook.unification(torch.tensor([False, True, True]))["llm_cosine"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="dead_code_restart"):
        UnifiedCodebook(table, torch.tensor([1, 2, 3]), vocab_size=8, dead_code_restart="decoder")


def test_health_reports_usage_and_perplexity():
    codebook = make_codebook()
    codebook.eval()
    codebook.update(torch.zeros(4, 4), torch.tensor([0, 0, 1, 1]))
    stats = codebook.health()
    assert stats["codebook/usage"] == pytest.approx(2 / 3)
    assert stats["codebook/perplexity"] == pytest.approx(2.0)
    assert stats["codebook/llm_distance"] == 0.0
    assert (
        stats["codebook/llm_cosine"] == pytest.approx(1.0) and stats["codebook/llm_relative_distance"] == 0.0
    )
    assert codebook.health()["codebook/usage"] == 0.0  # the window was reset


def test_unification_measures_how_far_the_codebook_is_from_the_llm_rows():
    codebook = make_codebook()
    llm = codebook.llm_embedding.clone()
    assert codebook.unification() == {"llm_cosine": pytest.approx(1.0), "llm_relative_distance": 0.0}
    codebook.embedding[0] = -llm[0]  # code 0 points away from its LLM row; the others are unchanged
    by_hand = (codebook.embedding - llm).norm() / llm.norm()
    everything = codebook.unification(torch.ones(codebook.num_codes, dtype=torch.bool))
    assert everything["llm_cosine"] == pytest.approx((codebook.num_codes - 2) / codebook.num_codes)
    assert everything["llm_relative_distance"] == pytest.approx(float(by_hand))
    others = torch.arange(codebook.num_codes) != 0
    assert codebook.unification(others)["llm_cosine"] == pytest.approx(1.0)  # only codes in use count


def test_lookup_rejects_ids_that_are_not_visual_codes():
    codebook = make_codebook()
    assert torch.equal(codebook.lookup(torch.tensor([9, 3])), codebook.embedding[[2, 0]])
    for bad in ([4], [-1], [16], [3, 99]):
        with pytest.raises(ValueError, match="not visual ids"):
            codebook.lookup(torch.tensor(bad))


@pytest.mark.parametrize(
    "ids,match", [([], "empty"), ([3, 16], "vocabulary"), ([-1, 2], "vocabulary"), ([5, 3], "increasing")]
)
def test_bad_visual_id_sets_are_refused(ids, match):
    with pytest.raises(ValueError, match=match):
        UnifiedCodebook(torch.zeros(len(ids), 4), torch.tensor(ids, dtype=torch.long), vocab_size=16)


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_embed_of_codes_equals_quantized_output(quantizer, pixels):
    tokenizer = tiny_tokenizer(quantizer).eval()
    encoded = tokenizer.encode(pixels)
    assert torch.allclose(
        tokenizer.quantizer.embed(encoded.codes).permute(0, 3, 1, 2), encoded.quantized, atol=1e-5
    )


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_embed_equals_quantized_in_training_mode_too(quantizer):
    """In training the EMA moves the rows after the search; quantize returns the rows it used."""
    tokenizer = tiny_tokenizer(quantizer, num_visual_codes=16)
    codebook = tokenizer.codebook
    before = codebook.embedding.clone()
    features = tokenizer._features(torch.rand(2, 3, 16, 16) * 2 - 1).detach()
    quantized, codes, _ = tokenizer.quantizer.quantize(features)
    assert not torch.equal(codebook.embedding, before), "the EMA should have moved some rows"
    assert codes.shape[-1] == tokenizer.config.codes_per_position
    assert quantized.shape == features.shape


@pytest.mark.parametrize("quantizer", QUANTIZERS)
def test_codes_are_always_visual_ids(quantizer):
    tokenizer = tiny_tokenizer(quantizer, num_visual_codes=40)
    visual = set(tokenizer.codebook.visual_ids.tolist())
    assert len(visual) == 40 and not visual & set(SPECIAL_IDS)
    for seed in range(3):
        torch.manual_seed(seed)
        codes = tokenizer(torch.rand(4, 3, 16, 16) * 2 - 1).codes
        assert set(codes.unique().tolist()) <= visual
        assert codes.min() >= 0 and codes.max() < VOCAB


def test_residual_levels_refine_the_reconstruction_of_features():
    llm = tiny_llm()
    table = llm.get_input_embeddings().weight.detach()
    codebook = UnifiedCodebook(table[3:], torch.arange(3, VOCAB), vocab_size=VOCAB)
    # features of mixed content (sums of a few rows): every level has something left to explain
    generator = torch.Generator().manual_seed(0)
    picks = torch.randint(3, VOCAB, (32, 3), generator=generator)
    features = table[picks].sum(dim=1).view(2, 4, 4, -1)
    errors = []
    for depth in (1, 2, 4):
        quantized, codes, _ = ResidualQuantizer(codebook, depth=depth).eval().quantize(features)
        errors.append(float((quantized - features).pow(2).mean()))
    assert errors[0] > errors[1] > errors[2]


def test_aggregation_rules():
    codebook = UnifiedCodebook(torch.randn(10, 8), torch.arange(10, 20), vocab_size=32, num_groups=2)
    codes = torch.tensor([[[[10, 11, 12, 13, 14]]]])
    hq = HierarchicalQuantizer(codebook).aggregate(codes)
    expected = codebook.embedding[0] + codebook.embedding[1:5].mean(dim=0)
    assert torch.allclose(hq[0, 0, 0], expected)
    mcq = MultiCodebookQuantizer(codebook).aggregate(codes[..., :2])
    assert torch.allclose(mcq[0, 0, 0], torch.cat([codebook.embedding[0, :4], codebook.embedding[1, 4:]]))
    rq = ResidualQuantizer(codebook, depth=3).aggregate(codes[..., :3])
    assert torch.allclose(rq[0, 0, 0], codebook.embedding[:3].sum(dim=0))
    vq = VectorQuantizer(codebook).aggregate(codes[..., :1])
    assert torch.allclose(vq[0, 0, 0], codebook.embedding[0])


def test_quantizers_reject_nan_features_and_wrong_shapes():
    codebook = UnifiedCodebook(torch.randn(10, 8), torch.arange(10), vocab_size=10)
    quantizer = VectorQuantizer(codebook)
    with pytest.raises(ValueError, match="NaN"):
        quantizer.quantize(torch.full((1, 2, 2, 8), float("nan")))
    with pytest.raises(ValueError, match=r"\(B, h, w, 8\)"):
        quantizer.quantize(torch.randn(1, 2, 2, 7))
    with pytest.raises(ValueError, match="codes are"):
        ResidualQuantizer(codebook, depth=2).embed(torch.zeros(1, 2, 2, 3, dtype=torch.long))


def test_level_scales_let_a_frozen_codebook_serve_every_rq_level():
    """Residuals that shrink 4-fold a level, a codebook held at the LLM rows: fitted s_d follow the shrinking,
    and the codebook stays C = C_L (issue 15 §1, the stacked-scale problem)."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.nn.functional.normalize(torch.randn(64, 16, generator=generator), dim=1)
    picks = torch.randint(0, 64, (4, 128), generator=generator)
    weights = torch.tensor([4.0, 1.0, 0.25, 0.0625])
    features = (rows[picks] * weights[:, None, None]).sum(dim=0).view(2, 8, 8, 16)

    def frozen_codebook():
        codebook = UnifiedCodebook(rows, torch.arange(10, 74), vocab_size=80)
        codebook.ema_enabled = False  # what CodebookSyncCallback's frozen mode does
        return codebook

    scaled = ResidualQuantizer(frozen_codebook(), depth=4, level_scales=True)
    for _ in range(3):
        scaled.quantize(features)  # training mode: the scales are fit
    scales = scaled.level_scales.tolist()
    assert scales[0] > scales[1] > scales[2] > scales[3] > 0
    assert torch.equal(scaled.codebook.embedding, scaled.codebook.llm_embedding)  # still C = C_L
    plain = ResidualQuantizer(frozen_codebook(), depth=4).eval()
    with_scales, codes, _ = scaled.eval().quantize(features)
    without_scales, _, _ = plain.quantize(features)
    assert (with_scales - features).pow(2).mean() < 0.5 * (without_scales - features).pow(2).mean()
    assert torch.allclose(scaled.embed(codes), with_scales, atol=1e-5)  # the decoder gets s_d * C[k_d]


def test_level_scales_are_saved_and_only_for_rq(tmp_path):
    from transformers_unicode import UniCodeVisualTokenizer

    tokenizer = tiny_tokenizer("rq", rq_level_scales=True)
    tokenizer.quantizer.quantize(tokenizer._features(torch.rand(2, 3, 16, 16) * 2 - 1).detach())
    assert not torch.equal(tokenizer.quantizer.level_scales, torch.ones(4))
    tokenizer.save_pretrained(tmp_path)
    loaded = UniCodeVisualTokenizer.from_pretrained(tmp_path)
    assert torch.equal(loaded.quantizer.level_scales, tokenizer.quantizer.level_scales)
    with pytest.raises(ValueError, match="RQ option"):
        tiny_tokenizer("mcq", rq_level_scales=True)


def test_llm_row_restarts_are_a_config_option_that_survives_save_and_load(tmp_path):
    from transformers_unicode import UniCodeVisualTokenizer, UniCodeVisualTokenizerConfig

    tokenizer = tiny_tokenizer("rq", dead_code_threshold=0.5, dead_code_restart="llm")
    assert tokenizer.codebook.dead_code_restart == "llm"
    tokenizer.save_pretrained(tmp_path)
    assert UniCodeVisualTokenizer.from_pretrained(tmp_path).codebook.dead_code_restart == "llm"
    with pytest.raises(ValueError, match="dead_code_restart must be 'encoder' or 'llm'"):
        UniCodeVisualTokenizerConfig(dead_code_restart="random")


def test_code_entropy_loss_is_zero_for_one_code_and_lowest_for_a_confident_spread():
    from transformers_unicode import code_entropy_loss

    rows = 10.0 * torch.eye(8)  # far apart: a feature on a row is assigned to it alone
    collapsed = code_entropy_loss(rows[[3, 3, 3, 3]], rows, temperature=1.0)
    spread = code_entropy_loss(rows, rows, temperature=1.0)
    assert collapsed == pytest.approx(0.0, abs=1e-6)
    assert spread == pytest.approx(-torch.log(torch.tensor(8.0)).item(), abs=1e-4)
    between = code_entropy_loss(torch.zeros(4, 8), rows, temperature=1.0)  # equidistant: unsure, spread
    assert between == pytest.approx(0.0, abs=1e-5)  # log 8 per feature, minus log 8 for the batch


def test_code_entropy_loss_spreads_collapsed_features_over_a_frozen_codebook():
    """Features that all start by one row of a codebook that cannot move: descending the loss alone moves them
    onto many rows, which is what a frozen (C = C_L) tokenizer's encoder would learn from it (issue 15)."""
    generator = torch.Generator().manual_seed(0)
    rows = torch.randn(32, 8, generator=generator)
    codebook = UnifiedCodebook(rows, torch.arange(10, 42), vocab_size=80)
    codebook.ema_enabled = False
    quantizer = ResidualQuantizer(codebook, depth=1, entropy_temperature=1.0)
    features = (rows[0] + 0.1 * torch.randn(1, 8, 8, 8, generator=generator)).requires_grad_()
    optimizer = torch.optim.Adam([features], lr=0.05)

    def rows_in_use():
        return quantizer.eval().quantize(features.detach())[1].unique().numel()

    before = rows_in_use()
    for _ in range(100):
        quantizer.train()
        _, _, losses = quantizer.quantize(features)
        optimizer.zero_grad()
        losses.code_entropy.backward()
        optimizer.step()
    assert torch.equal(codebook.embedding, codebook.llm_embedding)  # the codebook did not move
    assert before <= 2 and rows_in_use() >= 16


def test_code_entropy_weight_adds_the_loss_in_training_only(pixels):
    tokenizer = tiny_tokenizer("rq", code_entropy_weight=0.5)
    plain = tiny_tokenizer("rq")
    torch.manual_seed(0)
    out = tokenizer(pixels)
    torch.manual_seed(0)
    reference = plain(pixels)
    assert out.code_entropy_loss is not None and reference.code_entropy_loss is None
    assert out.loss.item() == pytest.approx((reference.loss + 0.5 * out.code_entropy_loss).item(), rel=1e-5)
    assert tokenizer.eval()(pixels).code_entropy_loss is None  # evaluation: the plain loss
    with pytest.raises(ValueError, match="VQ and RQ option"):
        tiny_tokenizer("mcq", code_entropy_weight=0.1)
