"""The local `evaluate` metrics, called the way a user calls them, against values worked out by hand."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from transformers_unicode.evaluation import (
    available_metrics,
    frechet_distance,
    image_diversity,
    inception_features,
    load_metric,
    normalize_vqa_answer,
    retrieval_accuracy,
    vqa_accuracy,
)


def solid(value, size=(8, 8)) -> np.ndarray:
    """An HxWx3 uint8 image of one colour (a gray level when `value` is a number)."""
    return np.broadcast_to(np.asarray(value, dtype=np.uint8), (*size, 3)).copy()


@pytest.fixture(scope="module")
def metric():
    loaded = {}

    def get(name):
        if name not in loaded:
            loaded[name] = load_metric(name)
        return loaded[name]

    return get


# ---- loading -------------------------------------------------------------------------------------------
def test_every_metric_folder_loads():
    assert available_metrics() == [
        "exact_match",
        "frechet_inception_distance",
        "image_diversity",
        "psnr",
        "retrieval_accuracy",
        "ssim",
        "vqa_accuracy",
    ]
    for name in available_metrics():
        assert load_metric(name).name == name


def test_unknown_metric_and_missing_evaluate_are_messages(monkeypatch):
    with pytest.raises(ValueError, match="Unknown metric 'accuracy'; available: exact_match, .*vqa_accuracy"):
        load_metric("accuracy")
    monkeypatch.setitem(sys.modules, "evaluate", None)  # makes `import evaluate` fail
    with pytest.raises(ImportError, match="pip install evaluate"):
        load_metric("psnr")


# ---- PSNR / SSIM ---------------------------------------------------------------------------------------
def test_psnr_of_constant_errors(metric, tmp_path):
    # A constant error e on every pixel: MSE = e^2, PSNR = 20 log10(255 / e). e = 51 -> 20 log10(5);
    # e = 255 -> 0 dB. The pairs differ in size from each other, and one comes as a PNG file path.
    Image.fromarray(solid(255, (12, 16))).save(tmp_path / "white.png")
    result = metric("psnr").compute(
        predictions=[solid(51), str(tmp_path / "white.png")], references=[solid(0), solid(0, (12, 16))]
    )
    assert result["psnr"] == pytest.approx((20 * math.log10(5) + 0.0) / 2, rel=1e-5)
    assert result["count"] == 2


def test_ssim_identical_constant_and_one_window(metric):
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert metric("ssim").compute(predictions=[image], references=[image])["ssim"] == pytest.approx(
        1.0, abs=1e-5
    )

    # Flat images have no variance, so SSIM is the luminance term alone: (2ab + C1) / (a^2 + b^2 + C1).
    a, b, c1 = 51 / 255, 102 / 255, 0.01**2
    flat = metric("ssim").compute(predictions=[solid(51, (11, 11))], references=[solid(102, (11, 11))])
    # (`ssim` computes in float32 as E[x^2] - E[x]^2, which leaves variances of ~1e-8 beside C2 = 9e-4.)
    assert flat["ssim"] == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-4)  # 0.80010

    # An 11x11 image is exactly one window: the Gaussian-weighted statistics, written out with numpy.
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 256, (2, 11, 11, 3), dtype=np.uint8)
    t = np.arange(11) - 5
    w = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * 1.5**2))
    w /= w.sum()
    c2 = 0.03**2
    per_channel = []
    for ch in range(3):
        u, v = x[..., ch] / 255, y[..., ch] / 255
        mu_u, mu_v = (w * u).sum(), (w * v).sum()
        var_u, var_v = (w * u * u).sum() - mu_u**2, (w * v * v).sum() - mu_v**2
        cov = (w * u * v).sum() - mu_u * mu_v
        per_channel.append(
            (2 * mu_u * mu_v + c1) * (2 * cov + c2) / ((mu_u**2 + mu_v**2 + c1) * (var_u + var_v + c2))
        )
    window = metric("ssim").compute(predictions=[x], references=[y])
    assert window["ssim"] == pytest.approx(np.mean(per_channel), abs=1e-5)


def test_image_metrics_reject_mismatched_inputs(metric):
    with pytest.raises(ValueError, match=r"Mismatch in the number of predictions \(2\) and references \(1\)"):
        metric("psnr").compute(predictions=[solid(0), solid(0)], references=[solid(0)])
    with pytest.raises(ValueError, match="Prediction 0 is \\(8, 8\\) but its reference is \\(4, 4\\)"):
        metric("ssim").compute(predictions=[solid(0)], references=[solid(0, (4, 4))])


# ---- exact match and VQA -------------------------------------------------------------------------------
def test_exact_match_with_its_baselines(metric):
    result = metric("exact_match").compute(
        predictions=["Flags.", "objects", "Flags", "Symbols"],
        references=["Flags", "Objects", "Objects", "Objects"],
    )
    # Flags: 1/1 right, Objects: 1/3 right; the majority answer (Objects) alone would score 3/4.
    assert result == {
        "exact_match": 0.5,
        "balanced_accuracy": pytest.approx((1 + 1 / 3) / 2),
        "majority_baseline": 0.75,
        "count": 4,
    }


@pytest.mark.parametrize(
    ("answer", "normal"),
    [
        ("Two dogs.", "2 dogs"),  # number word, final period, case
        ("the cat", "cat"),  # articles go
        ("An apple", "apple"),
        ("none", "0"),
        ("Ten", "10"),
        ("dont know", "don't know"),  # contractions get their apostrophe back
        ("It isnt", "it isn't"),
        ("couldnt've", "couldn't've"),
        ("1,000", "1000"),  # a comma between digits goes without splitting the number
        ("2.5", "2.5"),  # a period before a digit stays
        ("u.s.", "us"),
        ("Yes!", "yes"),  # a mark not next to a space becomes a space, which then collapses
        ("black-and-white", "black and white"),
        ("yes, it is", "yes it is"),  # a mark next to a space is dropped
        ("A dog, a cat", "dog cat"),
        ("  Red \t Car\n", "red car"),
    ],
)
def test_vqa_answer_normalisation(answer, normal):
    assert normalize_vqa_answer(answer) == normal


@pytest.mark.parametrize("m", [0, 1, 2, 3, 4, 10])
def test_vqa_accuracy_with_m_of_10_annotators(metric, m):
    closed_form = (m * min(1, (m - 1) / 3) + (10 - m) * min(1, m / 3)) / 10
    by_hand = {0: 0.0, 1: 0.3, 2: 0.6, 3: 0.9, 4: 1.0, 10: 1.0}[m]
    references = [["Yes"] * m + ["no"] * (10 - m)]
    result = metric("vqa_accuracy").compute(predictions=["yes."], references=references)
    assert result == {"vqa_accuracy": pytest.approx(closed_form), "count": 1}
    assert closed_form == pytest.approx(by_hand)


def test_vqa_accuracy_single_string_references_are_ten_annotators(metric):
    result = metric("vqa_accuracy").compute(
        predictions=["the cat", "dog", "Two"], references=["cat", "cat", "2"]
    )
    assert result == {"vqa_accuracy": pytest.approx(2 / 3), "count": 3}
    assert vqa_accuracy(["cat"], [["cat"]]) == {"vqa_accuracy": 1.0, "count": 1}  # a list of one, likewise
    with pytest.raises(ValueError, match="as many predictions as references"):
        vqa_accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="Mismatch in the number of predictions"):
        metric("vqa_accuracy").compute(predictions=["a", "b"], references=[["a"] * 10])


# ---- retrieval and diversity ---------------------------------------------------------------------------
# Gray images: in the thumbnail feature space two flat images g and h are |g - h| / 255 * sqrt(768) apart,
# so candidates sort by their distance in gray level.
CANDIDATES = [solid(0), solid(40), solid(100), solid(200)]


def test_retrieval_top1_misses_and_top5_hits(metric):
    # Query gray 55 asks for "c" (100): b (40) is 15 away, c 45, a 55, d 145 -> rank 1. Query 195 asks for
    # "d" (200), its nearest -> rank 0.
    result = metric("retrieval_accuracy").compute(
        predictions=[solid(55), solid(195)],
        references=["c", "d"],
        candidates=CANDIDATES,
        candidate_labels=["a", "b", "c", "d"],
        k=(1, 2, 5),
    )
    assert result == {"top1": 0.5, "top2": 1.0, "top5": 1.0, "count": 2, "candidates": 4}


def test_retrieval_with_group_labels(metric):
    # Groups 0 = {a, b}, 1 = {c, d}. Query 55 of group 1: b (group 0) is nearest, c second -> rank 1;
    # query 30 of group 0: b is nearest -> rank 0.
    result = metric("retrieval_accuracy").compute(
        predictions=[solid(55), solid(30)],
        references=[1, 0],
        candidates=CANDIDATES,
        candidate_labels=[0, 0, 1, 1],
    )
    assert result == {"top1": 0.5, "top5": 1.0, "count": 2, "candidates": 4}


def test_retrieval_rejects_bad_input(metric):
    features = np.zeros((2, 3))
    with pytest.raises(ValueError, match="absent from the candidates"):
        retrieval_accuracy(features, ["x", "y"], features, ["x", "z"])
    with pytest.raises(ValueError, match="2 candidate features for 3 candidate labels"):
        retrieval_accuracy(features, ["x", "y"], features, ["x", "y", "z"])
    with pytest.raises(ValueError, match="needs candidates"):
        metric("retrieval_accuracy").compute(predictions=[solid(0)], references=["a"])


def test_image_diversity_by_hand(metric):
    black, white, gray = solid(0), solid(255), solid(51)
    same = metric("image_diversity").compute(predictions=[gray, gray, gray], references=["p", "p", "p"])
    assert same == {"image_diversity": 0.0, "prompts": 1, "count": 3}
    # Prompt 0: black vs white, RMS difference 1. Prompt 1: black, black, white: pairs 0, 1, 1 -> 2/3.
    # Prompt 2: black vs gray 51, 0.2. Prompt 3 has one image and is left out.
    result = metric("image_diversity").compute(
        predictions=[black, white, black, black, white, black, gray, white],
        references=[0, 0, 1, 1, 1, 2, 2, 3],
    )
    assert result["image_diversity"] == pytest.approx((1 + 2 / 3 + 0.2) / 3, rel=1e-6)
    assert (result["prompts"], result["count"]) == (3, 8)
    with pytest.raises(ValueError, match="at least two images"):
        image_diversity(np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="2 feature rows for 3 prompt ids"):
        image_diversity(np.zeros((2, 3)), ["a", "a", "b"])


# ---- Fréchet distance ----------------------------------------------------------------------------------
def test_frechet_distance_of_diagonal_gaussians():
    # Diagonal covariances commute: d = |mu1 - mu2|^2 + sum_i (s1_i^(1/2) - s2_i^(1/2))^2
    #                                = 14 + (1 - 2)^2 + (2 - 1)^2 + (3 - 0.5)^2 = 22.25.
    mu1, mu2 = np.array([1.0, 2.0, 3.0]), np.zeros(3)
    assert frechet_distance(mu1, np.diag([1.0, 4.0, 9.0]), mu2, np.diag([4.0, 1.0, 0.25])) == pytest.approx(
        22.25
    )
    # Fewer samples than dimensions: a singular covariance; a set against itself is still ~0.
    features = np.random.default_rng(0).normal(size=(3, 5))
    mu, sigma = features.mean(0), np.cov(features, rowvar=False)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError, match="do not match"):
        frechet_distance(mu1, np.eye(3), np.zeros(2), np.eye(2))


class ChannelMeans(torch.nn.Module):
    """Stands in for Inception: the features of an image are its channel means."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        features = x.mean(dim=(2, 3))  # (N, 3)
        return features if return_features else features.sum(dim=1)


@pytest.fixture
def inception_path(tmp_path):
    path = tmp_path / "inception.pt"
    torch.jit.script(ChannelMeans()).save(str(path))
    return path


def test_inception_features_call_the_torchscript_file_on_0_255_pixels(inception_path):
    features = inception_features(
        [solid((10, 20, 30)), Image.new("RGB", (5, 7), (255, 0, 128))], inception_path, 1
    )
    np.testing.assert_allclose(features, [[10, 20, 30], [255, 0, 128]])


def test_fid_of_a_shifted_set_is_the_squared_shift(metric, inception_path):
    # Adding 10 to every channel moves the mean by (10, 10, 10) and leaves the covariance alone: FID = 300.
    colours = np.random.default_rng(0).integers(0, 240, (6, 3))
    real = [solid(c) for c in colours]
    shifted = [solid(c + 10) for c in colours]
    result = metric("frechet_inception_distance").compute(
        predictions=shifted, references=real, inception_path=str(inception_path), batch_size=4
    )
    assert result["frechet_inception_distance"] == pytest.approx(300.0, abs=1e-4)
    assert result["count"] == 6


def test_fid_without_the_inception_file_says_what_to_put_there(metric, tmp_path):
    missing = tmp_path / "nowhere" / "inception-2015-12-05.pt"
    with pytest.raises(
        FileNotFoundError, match=f"No Inception network at {missing}.*inception-2015-12-05.pt"
    ):
        metric("frechet_inception_distance").compute(
            predictions=[solid(0), solid(1)], references=[solid(0), solid(1)], inception_path=str(missing)
        )
    with pytest.raises(ValueError, match="needs inception_path"):
        metric("frechet_inception_distance").compute(predictions=[solid(0)], references=[solid(0)])


def test_group_judge_tells_real_pictures_apart_and_says_how_well():
    """The class-conditional judge on scikit-learn's digits (10 classes): fit, held-out score, refusal unfit."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    from transformers_unicode.evaluation.judge import GroupJudge

    digits = load_digits()
    images = [Image.fromarray((image * 255 / 16).astype(np.uint8)).convert("RGB") for image in digits.images]
    labels = [str(label) for label in digits.target]
    with pytest.raises(ValueError, match="Fit the judge"):
        GroupJudge().predict(images[:1])
    judge = GroupJudge(size=8, C=1.0).fit(images[:1500], labels[:1500])
    scores = judge.score(images[1500:], labels[1500:])
    assert scores["count"] == len(labels) - 1500
    assert scores["accuracy"] > 0.85 and scores["balanced_accuracy"] > 0.85  # digits are easy for pixels
    assert judge.predict(images[1500:1503]) == [
        str(p) for p in judge.classifier.predict(judge.features(images[1500:1503]))
    ]
    # The class-conditional protocol: real digits "drawn" for the label they show are mostly judged right, and the
    # shares are counted per requested group.
    asked = labels[1500:1600]
    drawn = judge.class_conditional(images[1500:1600], asked)
    verdicts = judge.predict(images[1500:1600])
    assert (
        drawn["judged_as"] == verdicts and drawn["drawings"] == 100 and drawn["chance"] == 1 / len(set(asked))
    )
    assert drawn["in_requested_group"] == sum(v == a for v, a in zip(verdicts, asked, strict=True)) / 100
    assert set(drawn["per_group"]) == set(asked) and all(
        0 <= share <= 1 for share in drawn["per_group"].values()
    )
