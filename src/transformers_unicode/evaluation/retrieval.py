"""Retrieval and diversity of generated images, in a fixed, model-free feature space.

The feature space is a small RGB thumbnail: no learned network, so the numbers cost nothing, need no
download and compare across runs and machines, at the price of measuring layout and colour rather than
meaning. That suits emoji-like renders, where a right drawing is close in pixels to the real one.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np
from PIL import Image
from scipy.spatial.distance import cdist, pdist

from .images import as_pil


def image_features(images: Sequence, side: int = 16) -> np.ndarray:
    """Each image (PIL or HxWx3 uint8) resized (bilinear) to `side` x `side`, RGB in [0, 1], flattened.

    Returns a float32 array of shape (N, side * side * 3). 16 pixels keep the shape and colours of an emoji
    and drop the sub-pixel detail that a generator need not reproduce exactly.
    """
    if side < 1:
        raise ValueError(f"side must be a positive number of pixels; got {side}.")
    if len(images) == 0:
        raise ValueError("image_features needs at least one image.")
    return np.stack(
        [
            np.asarray(as_pil(image).resize((side, side), Image.BILINEAR), dtype=np.float32).ravel() / 255
            for image in images
        ]
    )


def _as_matrix(features, name: str) -> np.ndarray:
    matrix = np.asarray(features, dtype=np.float64)
    if matrix.ndim != 2 or len(matrix) == 0:
        raise ValueError(f"{name} must be a non-empty (N, dim) array; got shape {matrix.shape}.")
    return matrix


def retrieval_ranks(
    query_features, query_labels: Sequence[Hashable], candidate_features, candidate_labels: Sequence[Hashable]
) -> np.ndarray:
    """For each query, the position of the first candidate with the query's label when candidates are sorted by
    L2 distance to the query (0 = retrieved first).

    Counted as the number of candidates strictly closer than the nearest one with the query's label, so ties
    go in the query's favour and the result does not depend on how a sort breaks them.
    """
    queries = _as_matrix(query_features, "query_features")
    candidates = _as_matrix(candidate_features, "candidate_features")
    if len(queries) != len(query_labels):
        raise ValueError(f"{len(queries)} query features for {len(query_labels)} query labels.")
    if len(candidates) != len(candidate_labels):
        raise ValueError(
            f"{len(candidates)} candidate features for {len(candidate_labels)} candidate labels."
        )
    if queries.shape[1] != candidates.shape[1]:
        raise ValueError(f"Queries have {queries.shape[1]} features but candidates {candidates.shape[1]}.")
    # Labels as small integers, so that any hashable label (str, int) compares the same way.
    index = {label: i for i, label in enumerate(dict.fromkeys(candidate_labels))}
    missing = [label for label in query_labels if label not in index]
    if missing:
        raise ValueError(
            f"Query labels absent from the candidates, so they can never be retrieved: {missing[:5]}."
        )
    query_ids = np.array([index[label] for label in query_labels])
    candidate_ids = np.array([index[label] for label in candidate_labels])

    distances = cdist(queries, candidates)  # (n, N)
    same = candidate_ids[None, :] == query_ids[:, None]  # (n, N)
    nearest_same = np.where(same, distances, np.inf).min(axis=1)  # (n,)
    return (distances < nearest_same[:, None]).sum(axis=1)


def retrieval_accuracy(
    query_features,
    query_labels: Sequence[Hashable],
    candidate_features,
    candidate_labels: Sequence[Hashable],
    k: int | Sequence[int] = (1, 5),
) -> dict:
    """Top-k retrieval accuracy: the share of queries whose label is among the labels of its k nearest candidates.

    With one candidate per label (every real emoji render, labelled by its name) it asks "is the drawing
    closest to the emoji it names?"; with group labels it asks "is an emoji of the prompted group among the k
    nearest renders?", which still means something for prompts held out of training.

    Returns `{"top1": ..., "top5": ..., "count": queries, "candidates": candidates}` (one `top{k}` per k).
    """
    ks = (k,) if isinstance(k, int) else tuple(k)
    if not ks or any(value < 1 for value in ks):
        raise ValueError(f"k must be positive integers; got {k}.")
    ranks = retrieval_ranks(query_features, query_labels, candidate_features, candidate_labels)
    result = {f"top{value}": float(np.mean(ranks < value)) for value in ks}
    return {**result, "count": len(ranks), "candidates": len(candidate_labels)}


def image_diversity(features, prompt_ids: Sequence[Hashable]) -> dict:
    """How different the images drawn from one prompt (with different seeds) are.

    The mean pairwise L2 distance between the features of images of the same prompt, divided by
    sqrt(dim) so that in the `image_features` space it is a root-mean-square pixel difference in [0, 1];
    averaged over the prompts with at least two images. 0 means every seed gave the same image, a sign of a
    collapsed sampler (or of greedy decoding).

    Returns `{"image_diversity": ..., "prompts": prompts scored, "count": images}`.
    """
    matrix = _as_matrix(features, "features")
    if len(matrix) != len(prompt_ids):
        raise ValueError(f"{len(matrix)} feature rows for {len(prompt_ids)} prompt ids.")
    groups: dict[Hashable, list[int]] = {}
    for row, prompt in enumerate(prompt_ids):
        groups.setdefault(prompt, []).append(row)
    per_prompt = [pdist(matrix[rows]).mean() for rows in groups.values() if len(rows) >= 2]
    if not per_prompt:
        raise ValueError("image_diversity needs at least two images (two seeds) of one prompt.")
    return {
        "image_diversity": float(np.mean(per_prompt) / math.sqrt(matrix.shape[1])),
        "prompts": len(per_prompt),
        "count": len(matrix),
    }


__all__ = ["image_diversity", "image_features", "retrieval_accuracy", "retrieval_ranks"]
