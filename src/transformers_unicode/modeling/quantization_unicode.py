"""Quantization into an LLM's own token-embedding table.

The visual codebook of UniCode is a copy of (a subset of) the rows of a causal LM's input-embedding
table. A code is therefore an ordinary LLM token id: the quantizers below return ids, never private
row indices, and `embed(codes)` maps ids back to vectors. Layout of this file, top to bottom:

1. `nearest_code_search`: the hot path (Eq. 1), tiled so it never builds the N x V distance matrix.
2. `UnifiedCodebook`: the rows, their EMA statistics (Eq. 2), the pull toward the LLM table (Eq. 3),
   dead-code restarts and health statistics.
3. The quantizers VQ / RQ / HQ / MCQ behind one interface: `quantize(z) -> (quantized, codes, losses)`
   and `embed(codes) -> quantized`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

# A tile of the score matrix holds at most this many floats (64 MiB in fp32). Measured on 2 cores:
# tiles of ~4096 queries x ~4096 codes keep the GEMM at full speed while the tile stays cache-friendly,
# and the memory a search needs is one tile whatever N is.
DEFAULT_TILE_ELEMENTS = 1 << 24
DEFAULT_TILE_ROWS = 4096


def nearest_code_search(
    queries: torch.Tensor,
    codebook: torch.Tensor,
    half_sq_norms: torch.Tensor | None = None,
    tile_elements: int = DEFAULT_TILE_ELEMENTS,
    tile_rows: int = DEFAULT_TILE_ROWS,
) -> torch.Tensor:
    """Row index of the nearest codebook row for every query (Eq. 1), exactly as brute force would.

    argmin_k ||x - e_k||^2 = argmin_k (0.5 ||e_k||^2 - x . e_k), so one `addmm` per tile computes the
    scores with the code norms folded in, and a running minimum merges the tiles. Peak extra memory is
    one tile (`tile_elements` floats), flat in the number of queries.

    Args:
        queries (`torch.Tensor` of shape `(N, c)`): vectors to quantize.
        codebook (`torch.Tensor` of shape `(K, c)`): candidate rows.
        half_sq_norms (`torch.Tensor` of shape `(K,)`, *optional*): `0.5 * ||e_k||^2`, precomputed by the
            caller when the codebook is searched many times between updates.
    Returns:
        `torch.LongTensor` of shape `(N,)`: row indices into `codebook`.
    """
    if queries.dim() != 2 or codebook.dim() != 2 or queries.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"nearest_code_search needs queries (N, c) and codebook (K, c) of the same c; got "
            f"{tuple(queries.shape)} and {tuple(codebook.shape)}."
        )
    queries = queries.detach()
    codebook = codebook.detach().to(queries.dtype)
    if half_sq_norms is None:
        half_sq_norms = half_squared_norms(codebook)
    half_sq_norms = half_sq_norms.to(queries.dtype)
    num_queries, num_codes = queries.shape[0], codebook.shape[0]
    rows = max(1, min(num_queries, tile_rows))
    cols = max(1, min(num_codes, tile_elements // rows))
    indices = torch.empty(num_queries, dtype=torch.long, device=queries.device)
    if num_queries == 0:
        return indices
    tile = queries.new_empty(rows, cols)
    for start in range(0, num_queries, rows):
        block = queries[start : start + rows]
        best_value = best_index = None
        for code_start in range(0, num_codes, cols):
            code_end = min(code_start + cols, num_codes)
            scores = tile[: block.shape[0], : code_end - code_start]
            # scores = 0.5 ||e||^2 - x . e   (rows, cols), written into the reused tile
            torch.addmm(
                half_sq_norms[code_start:code_end],
                block,
                codebook[code_start:code_end].T,
                beta=1,
                alpha=-1,
                out=scores,
            )
            value, index = scores.min(dim=1)
            if best_value is None:
                best_value, best_index = value, index
            else:
                # strict "<" keeps the first minimum, as torch.argmin over the full row would
                better = value < best_value
                best_value = torch.where(better, value, best_value)
                best_index = torch.where(better, index + code_start, best_index)
        indices[start : start + block.shape[0]] = best_index
    return indices


def half_squared_norms(codebook: torch.Tensor) -> torch.Tensor:
    """0.5 * ||e_k||^2 per row, without a codebook-sized temporary."""
    return torch.linalg.vector_norm(codebook, dim=1).square_().mul_(0.5)


DEAD_CODE_RESTARTS = ("encoder", "llm")


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over data-parallel processes; a no-op when torch.distributed is not running."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _broadcast_from_rank0(tensor: torch.Tensor) -> torch.Tensor:
    """Make a random choice identical on every rank (rank 0 decides)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(tensor, src=0)
    return tensor


def _rebuild_unified_copies(module, state_dict, prefix, *args) -> None:
    """A codebook saved as C = C_L (issue 15; the tokenizer's `codebook_storage="llm_rows"`) holds C_L and the
    EMA counts only; C is C_L, and the EMA sums are C times the counts, so `load_state_dict` (a Trainer resume)
    gets them back exactly."""
    llm, counts = state_dict.get(prefix + "llm_embedding"), state_dict.get(prefix + "cluster_size")
    if llm is None or counts is None or prefix + "embedding" in state_dict:
        return
    state_dict[prefix + "embedding"] = llm.clone()
    sums = llm.clone()
    for group in range(module.num_groups):
        cols = module.group_slice(group)
        sums[:, cols] = llm[:, cols] * counts[group, :, None]
    state_dict[prefix + "embed_sum"] = sums


class UnifiedCodebook(nn.Module):
    """The visual copy of an LLM's embedding rows, indexed by LLM token id.

    Row `k` of `embedding` is the visual code for LLM id `visual_ids[k]`. The rows are not trained by
    gradients: in training mode every quantizer call updates them by exponential moving average of
    the encoder outputs that chose them (Eq. 2), and `pull_toward_llm` moves them toward `llm_embedding`,
    the frozen LLM rows they started from (Eq. 3).

    MCQ splits the embedding dimensions into `num_groups` slices that are searched and updated
    independently, so the EMA counts are kept per group: `cluster_size` is `(num_groups, K)`.

    All state is in buffers, so it is saved in `model.safetensors` and restored on resume; the EMA
    statistics are all-reduced across processes before they are applied.

    Args:
        llm_embedding (`torch.Tensor` of shape `(K, c)`): the LLM table rows for `visual_ids`.
        visual_ids (`torch.LongTensor` of shape `(K,)`): the LLM ids that are visual codes, strictly increasing.
        vocab_size (`int`): size of the LLM vocabulary, to validate ids.
        num_groups (`int`): dimension slices searched independently (1 except for MCQ).
        decay (`float`): the EMA decay gamma of Eq. 2.
        dead_code_threshold (`float`): a code whose EMA count falls below this is restarted; 0 disables
            restarts.
        dead_code_restart (`str`): where a dead code restarts: `"encoder"`, a random encoder output of the
            current batch (moves the row off the LLM table), or `"llm"`, its own LLM row (issue 15: the row
            goes back onto C_L, so restarts never take the codebook away from the table).
    """

    def __init__(
        self,
        llm_embedding: torch.Tensor,
        visual_ids: torch.Tensor,
        vocab_size: int,
        num_groups: int = 1,
        decay: float = 0.99,
        dead_code_threshold: float = 0.0,
        dead_code_restart: str = "encoder",
        eps: float = 1e-5,
    ):
        super().__init__()
        visual_ids = torch.as_tensor(visual_ids, dtype=torch.long).flatten()
        validate_visual_ids(visual_ids, vocab_size)
        if llm_embedding.dim() != 2 or llm_embedding.shape[0] != visual_ids.numel():
            raise ValueError(
                f"llm_embedding must be (len(visual_ids), c) = ({visual_ids.numel()}, c); got "
                f"{tuple(llm_embedding.shape)}."
            )
        if dead_code_restart not in DEAD_CODE_RESTARTS:
            raise ValueError(
                f"dead_code_restart must be one of {DEAD_CODE_RESTARTS}; got {dead_code_restart!r}."
            )
        dim = llm_embedding.shape[1]
        if dim % num_groups:
            raise ValueError(f"The embedding dimension {dim} is not divisible into {num_groups} groups.")
        self.vocab_size = vocab_size
        self.num_groups = num_groups
        self.decay = decay
        self.dead_code_threshold = dead_code_threshold
        self.dead_code_restart = dead_code_restart
        self.eps = eps
        # EMA updates are switched off by the frozen mode of CodebookSyncCallback.
        self.ema_enabled = True
        self._norm_cache = None
        llm_embedding = llm_embedding.detach().float().clone()
        num_codes = visual_ids.numel()
        self.register_buffer("visual_ids", visual_ids.clone())
        self.register_buffer("llm_embedding", llm_embedding)
        self.register_buffer("embedding", llm_embedding.clone())
        self.register_buffer("cluster_size", torch.ones(num_groups, num_codes))
        self.register_buffer("embed_sum", llm_embedding.clone())
        # Codes chosen since the last health() call (the logging window); not worth saving.
        self.register_buffer("usage_counts", torch.zeros(num_groups, num_codes), persistent=False)
        self.register_load_state_dict_pre_hook(_rebuild_unified_copies)

    @property
    def num_codes(self) -> int:
        return self.visual_ids.numel()

    @property
    def dim(self) -> int:
        return self.embedding.shape[1]

    @property
    def group_dim(self) -> int:
        return self.dim // self.num_groups

    def group_slice(self, group: int) -> slice:
        return slice(group * self.group_dim, (group + 1) * self.group_dim)

    # ---- ids <-> rows -------------------------------------------------------------------------
    def rows_of(self, codes: torch.Tensor) -> torch.Tensor:
        """Row indices of LLM ids; a clear error when an id is not a visual code."""
        # visual_ids is sorted, so a binary search finds the row; no vocab-sized map to keep in sync.
        codes = codes.long()
        rows = torch.searchsorted(self.visual_ids, codes.contiguous()).clamp_(max=self.num_codes - 1)
        bad = self.visual_ids[rows] != codes
        if not bad.any():
            return rows
        examples = codes[bad].unique()[:5].tolist()
        raise ValueError(
            f"{int(bad.sum())} code(s) are not visual ids of this codebook (e.g. {examples}); codes must be "
            f"LLM token ids among the {self.num_codes} visual ids (see `visual_ids`)."
        )

    def lookup(self, codes: torch.Tensor, group: int | None = None) -> torch.Tensor:
        """Embedding rows (or one group's slice of them) for LLM ids of any shape."""
        rows = self.rows_of(codes)
        table = self.embedding if group is None else self.embedding[:, self.group_slice(group)]
        return F.embedding(rows, table)

    # ---- search and EMA -----------------------------------------------------------------------
    def search(self, z: torch.Tensor, group: int | None = None) -> torch.Tensor:
        """Row indices of the nearest codes for `z` (N, c or c/num_groups)."""
        table = self.embedding if group is None else self.embedding[:, self.group_slice(group)]
        # The norms change only when the rows do; torch bumps a tensor's version on every in-place write,
        # so the cache is keyed on it (RQ searches the same rows D times per step in eval).
        key = (group, self.embedding._version, self.embedding.data_ptr())
        if self._norm_cache is None or self._norm_cache[0] != key:
            self._norm_cache = (key, half_squared_norms(table))
        return nearest_code_search(z, table, self._norm_cache[1])

    @torch.no_grad()
    def update(self, z: torch.Tensor, rows: torch.Tensor, group: int = 0) -> None:
        """Accumulate one batch into the EMA statistics of Eq. 2 and recompute the moved rows.

        N_k <- gamma N_k + (1 - gamma) sum_i 1[M_i = k];  m_k <- gamma m_k + (1 - gamma) sum_i 1[M_i = k] z_i;
        e_k <- m_k / N_k. Counts and sums are all-reduced first, so every replica applies the same update.
        """
        z = z.detach().float()
        cols = self.group_slice(group) if self.num_groups > 1 else slice(None)
        counts = torch.bincount(rows, minlength=self.num_codes).float()
        if not self.training:
            # Inference (a processor tokenising a data set, often on one rank only): local usage counts and no
            # collective, which would wait forever for ranks that are not encoding.
            self.usage_counts[group] += counts
            return
        sums = torch.zeros(self.num_codes, z.shape[1], device=z.device).index_add_(0, rows, z)
        stats = _all_reduce_sum(torch.cat([counts[:, None], sums], dim=1))
        counts, sums = stats[:, 0], stats[:, 1:]
        self.usage_counts[group] += counts
        if not (self.training and self.ema_enabled):
            return
        gamma = self.decay
        self.cluster_size[group].mul_(gamma).add_(counts, alpha=1 - gamma)
        self.embed_sum[:, cols].mul_(gamma).add_(sums, alpha=1 - gamma)
        # A code that has (almost) never been chosen keeps its row: dividing two vanishing numbers would
        # only add noise, and its row should stay what the pull toward the LLM table made it.
        live = self.cluster_size[group] > self.eps
        self.embedding[live, cols] = self.embed_sum[live, cols] / self.cluster_size[group, live, None]
        if self.dead_code_threshold > 0:
            self._restart_dead_codes(z, group, cols)

    @torch.no_grad()
    def _restart_dead_codes(self, z: torch.Tensor, group: int, cols: slice) -> None:
        """Move codes whose EMA count fell below the threshold onto random encoder outputs, or back onto
        their LLM rows (`dead_code_restart="llm"`).

        Rank 0 draws the replacement vectors and broadcasts them, so the replicas stay identical.
        """
        dead = self.cluster_size[group] < self.dead_code_threshold
        num_dead = int(dead.sum())
        if num_dead == 0 or z.shape[0] == 0:
            return
        if self.dead_code_restart == "llm":
            replacement = self.llm_embedding[dead, cols]  # the same on every replica: nothing to broadcast
        else:
            picks = torch.randint(0, z.shape[0], (num_dead,), device=z.device)
            replacement = _broadcast_from_rank0(z[picks].contiguous())
        self.embedding[dead, cols] = replacement
        self.embed_sum[dead, cols] = replacement
        self.cluster_size[group, dead] = 1.0

    @torch.no_grad()
    def pull_toward(self, target: torch.Tensor, decay: float) -> None:
        """Eq. 3: C <- gamma C + (1 - gamma) target; the EMA sums follow so the move persists."""
        self.embedding.mul_(decay).add_(target.to(self.embedding), alpha=1 - decay)
        self._resync_sums()

    @torch.no_grad()
    def set_embedding(self, values: torch.Tensor) -> None:
        self.embedding.copy_(values)
        self._resync_sums()

    def _resync_sums(self) -> None:
        for group in range(self.num_groups):
            cols = self.group_slice(group)
            self.embed_sum[:, cols] = self.embedding[:, cols] * self.cluster_size[group, :, None]

    # ---- health ----------------------------------------------------------------------------------
    @torch.no_grad()
    def unification(self, in_use: torch.Tensor | None = None) -> dict[str, float]:
        """How far the visual codebook C is from C_L, the LLM's rows of the same ids (SPEC 3.2, Eq. 3).

        - `llm_cosine`: the mean cosine between a code's row in C and its LLM row, over the codes `in_use`
          (a boolean mask over the codes; by default those whose EMA count is above the restart threshold,
          or all of them when none is). 1.0 means the LLM reads an image through the very vectors the
          decoder was trained on.
        - `llm_relative_distance`: ||C - C_L|| / ||C_L|| over the whole table (Frobenius norms); 0.0 when
          C = C_L exactly.
        """
        if in_use is None:
            threshold = self.dead_code_threshold if self.dead_code_threshold > 0 else 1e-3
            in_use = self.cluster_size.max(dim=0).values >= threshold
        if not bool(in_use.any()):
            in_use = torch.ones_like(in_use)
        embedding, llm = self.embedding.float(), self.llm_embedding.float()
        cosine = torch.nn.functional.cosine_similarity(embedding[in_use], llm[in_use], dim=1)
        return {
            "llm_cosine": float(cosine.mean()),
            "llm_relative_distance": float((embedding - llm).norm() / llm.norm().clamp(min=1e-12)),
        }

    @torch.no_grad()
    def health(self, reset: bool = True) -> dict[str, float]:
        """Codebook statistics worth logging: usage over the window, perplexity, dead codes, drift.

        The window is everything quantized since the previous call with `reset=True`.

        - `codebook/usage`: fraction of the visual ids chosen at least once in the window.
        - `codebook/perplexity`: exp(entropy) of the code distribution in the window (K is the best).
        - `codebook/dead_codes`: codes whose EMA count is below the restart threshold (or ~0).
        - `codebook/llm_distance`: mean L2 distance between visual rows and the LLM rows.
        - `codebook/llm_cosine`, `codebook/llm_relative_distance`: how unified the codebook is
          ([`~UnifiedCodebook.unification`]), over the codes used in the window.
        """
        counts = self.usage_counts.sum(dim=0)
        total = counts.sum()
        if total > 0:
            probs = counts / total
            entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
            perplexity = float(entropy.exp())
        else:
            perplexity = 0.0
        threshold = self.dead_code_threshold if self.dead_code_threshold > 0 else 1e-3
        stats = {
            "codebook/usage": float((counts > 0).float().mean()),
            "codebook/perplexity": perplexity,
            "codebook/dead_codes": float((self.cluster_size.min(dim=0).values < threshold).sum()),
            "codebook/llm_distance": float((self.embedding - self.llm_embedding).norm(dim=1).mean()),
            **{f"codebook/{k}": v for k, v in self.unification(counts > 0 if total > 0 else None).items()},
        }
        if reset:
            self.usage_counts.zero_()
        return stats


def validate_visual_ids(visual_ids: torch.Tensor, vocab_size: int) -> None:
    """Visual ids must be a non-empty, strictly increasing set of ids inside the LLM vocabulary."""
    if visual_ids.numel() == 0:
        raise ValueError("The set of visual ids is empty: give at least one LLM token id to use as a code.")
    if visual_ids.is_meta:  # placeholder built by from_pretrained; the real ids arrive with the weights
        return
    low, high = int(visual_ids.min()), int(visual_ids.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(
            f"Visual ids must lie in the LLM vocabulary [0, {vocab_size}); got ids from {low} to {high}."
        )
    if visual_ids.numel() > 1 and not bool((visual_ids[1:] > visual_ids[:-1]).all()):
        raise ValueError("Visual ids must be strictly increasing (sorted, no duplicates).")


# ------------------------------------------------------------------------------------------------
# Quantizers
# ------------------------------------------------------------------------------------------------


@dataclass
class QuantizerLosses:
    """Commitment loss ||z - sg(zq)||^2, averaged over levels; the codebook itself learns by EMA.

    `code_entropy` is the code-usage entropy loss (`code_entropy_loss`), averaged over levels; 0 unless the
    quantizer was built with an entropy temperature.
    """

    commitment: torch.Tensor
    code_entropy: torch.Tensor | float = 0.0


def code_entropy_loss(features: torch.Tensor, table: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean entropy of each feature's soft assignment minus the entropy of the batch's mean assignment.

    The assignment is softmax(-||z - c_k||^2 / temperature) over the codebook rows. Minimising the first term
    makes each feature commit to one row; maximising the second spreads the batch over the rows (the entropy
    penalty of MAGVIT-v2's lookup-free quantizer, here on Euclidean distances). Its gradient reaches
    the encoder only: it is how a codebook that cannot move (C = C_L) gets used widely, where the EMA and
    restarts that spread a learned codebook are off (issue 15). Written by hand because no HF library has it.
    """
    flat = features.reshape(-1, features.shape[-1]).float()
    table = table.float()
    squared = (
        flat.pow(2).sum(-1, keepdim=True) - 2 * flat @ table.t() + table.pow(2).sum(-1)
    )  # (N, K); K is the visual codes, so this is N x K, never N x V
    log_probs = torch.log_softmax(-squared / temperature, dim=-1)
    probs = log_probs.exp()
    per_feature = -(probs * log_probs).sum(-1).mean()
    mean = _all_reduce_mean(probs.mean(0))
    batch = -(mean * mean.clamp_min(1e-12).log()).sum()
    return per_feature - batch


def _all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean over replicas, differentiable (each replica's own share keeps its gradient)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    gathered = [torch.zeros_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, tensor.detach())
    gathered[dist.get_rank()] = tensor
    return torch.stack(gathered).mean(0)


def _check_features(z: torch.Tensor, dim: int) -> None:
    if z.dim() != 4 or z.shape[-1] != dim:
        raise ValueError(f"Quantizers take features (B, h, w, {dim}); got {tuple(z.shape)}.")
    if not torch.isfinite(z).all():
        raise ValueError(
            "The encoder produced NaN or infinite features; lower the learning rate or check the input "
            "images for NaN values."
        )


def _straight_through(z: torch.Tensor, zq: torch.Tensor) -> torch.Tensor:
    return z + (zq - z).detach()


class UniCodeQuantizer(nn.Module):
    """Interface shared by the quantizers: LLM ids in, LLM ids out.

    `codes_per_position` (D) is how many ids one position of the code map carries and
    `spatial_factor` how much finer the feature map is than the code map (2 for HQ's bottom level).
    """

    codes_per_position: int = 1
    spatial_factor: int = 1

    def __init__(self, codebook: UnifiedCodebook, entropy_temperature: float | None = None):
        super().__init__()
        self.codebook = codebook
        # With a temperature, `quantize` also returns the code-usage entropy loss (VQ and RQ); None: not computed.
        self.entropy_temperature = entropy_temperature

    def _level_entropy(self, z: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor | float:
        """The entropy loss of one level's features (with their gradient), searched as `_quantize_level` does."""
        if self.entropy_temperature is None or not self.training:
            return 0.0
        if scale is not None:  # a copy: the level's scale is refit in place after this, within the same graph
            z = z / scale.detach().clone()
        return code_entropy_loss(z, self.codebook.embedding, self.entropy_temperature)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, QuantizerLosses]:
        raise NotImplementedError

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def aggregate(self, codes: torch.Tensor) -> torch.Tensor:
        """F: one vector per code-map position from its D codes, as the LLM reads it (B, h, w, c)."""
        raise NotImplementedError

    def _check_codes(self, codes: torch.Tensor) -> None:
        if codes.dim() != 4 or codes.shape[-1] != self.codes_per_position:
            raise ValueError(
                f"{type(self).__name__} codes are (B, h, w, {self.codes_per_position}) LLM ids; got "
                f"{tuple(codes.shape)}."
            )

    def _quantize_level(
        self, z: torch.Tensor, group: int | None = None, scale: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest codes for z (..., c'), EMA update in training; returns (zq, LLM ids).

        With a `scale` s the level's codes are s * C: for s > 0, argmin ||z - s c|| = argmin ||z / s - c||, so the
        search and the EMA see z / s and the rows stay at the scale of the LLM table.
        """
        flat = z.reshape(-1, z.shape[-1])
        if scale is not None:
            flat = flat / scale
        rows = self.codebook.search(flat, group)
        self.codebook.update(flat, rows, group or 0)
        table = (
            self.codebook.embedding
            if group is None
            else self.codebook.embedding[:, self.codebook.group_slice(group)]
        )
        zq = F.embedding(rows, table).view_as(z)
        if scale is not None:
            zq = zq * scale
        return zq, self.codebook.visual_ids[rows].view(z.shape[:-1])


class VectorQuantizer(UniCodeQuantizer):
    """One code per position (D = 1): plain VQ against the unified codebook."""

    def quantize(self, z):
        _check_features(z, self.codebook.dim)
        zq, codes = self._quantize_level(z)
        losses = QuantizerLosses(commitment=F.mse_loss(z, zq.detach()), code_entropy=self._level_entropy(z))
        return _straight_through(z, zq), codes.unsqueeze(-1), losses

    def embed(self, codes):
        self._check_codes(codes)
        return self.codebook.lookup(codes[..., 0])

    def aggregate(self, codes):
        self._check_codes(codes)
        return aggregate_code_embeddings(self.codebook.lookup(codes), "sum")


class ResidualQuantizer(UniCodeQuantizer):
    """RQ (Lee et al. 2022): code d quantizes what codes 1..d-1 left; F = sum of the D embeddings.

    All depths share one codebook, as in RQ-VAE, so every code is the same kind of LLM id.

    With `level_scales`, level d's codes are s_d * C (SPEC 3.2's stacked-scale problem): the residuals shrink
    ~14-fold from level 1 to 4 while every LLM row has about the same norm, so a codebook held at C = C_L
    (frozen, or the end of an annealed pull) can serve one level only. Each s_d is the least-squares fit of the
    level's chosen rows to its residuals, <r, c> / <c, c>, followed by EMA (the codebook's decay) in
    training: D numbers, buffers, no gradients. The decoder reads sum_d s_d C[k_d]; the LLM reads its own rows
    unscaled, as without scales (a linear probe found the group equally readable either way; README).
    """

    def __init__(
        self,
        codebook: UnifiedCodebook,
        depth: int = 4,
        level_scales: bool = False,
        entropy_temperature: float | None = None,
    ):
        super().__init__(codebook, entropy_temperature)
        if depth < 1:
            raise ValueError(f"Residual depth must be >= 1; got {depth}.")
        self.codes_per_position = depth
        self.uses_level_scales = level_scales
        if level_scales:
            self.register_buffer("level_scales", torch.ones(depth))
            # Whether the scales were ever fit: the first training batch sets them, later ones move them by EMA.
            self.register_buffer("level_scales_fitted", torch.zeros((), dtype=torch.bool))

    def quantize(self, z):
        _check_features(z, self.codebook.dim)
        residual, total = z, torch.zeros_like(z)
        codes, commitment, entropy = [], 0.0, 0.0
        for level in range(self.codes_per_position):
            scale = self.level_scales[level] if self.uses_level_scales else None
            entropy = entropy + self._level_entropy(residual, scale)
            zq, level_codes = self._quantize_level(residual.detach(), scale=scale)
            if scale is not None and self.training:
                rows = zq.detach() / scale
                self._fit_scale(level, residual.detach(), rows)
                if not bool(self.level_scales_fitted):
                    # The first fit is used at once: the next level's residual must not inherit an unscaled one.
                    zq = rows * self.level_scales[level]
            total = total + zq
            residual = residual - zq
            codes.append(level_codes)
            commitment = commitment + F.mse_loss(z, total.detach())
        if self.uses_level_scales and self.training:
            self.level_scales_fitted.fill_(True)
        losses = QuantizerLosses(
            commitment=commitment / self.codes_per_position, code_entropy=entropy / self.codes_per_position
        )
        return _straight_through(z, total), torch.stack(codes, dim=-1), losses

    @torch.no_grad()
    def _fit_scale(self, level: int, residual: torch.Tensor, rows: torch.Tensor) -> None:
        """s_d <- EMA of argmin_s ||r - s c||^2 over the batch; summed over replicas so they stay identical."""
        stats = _all_reduce_sum(
            torch.stack([(residual.float() * rows.float()).sum(), rows.float().pow(2).sum()])
        )
        fit = (stats[0] / stats[1].clamp_min(1e-12)).clamp_min(1e-3)  # a scale must stay positive
        if not bool(self.level_scales_fitted):
            self.level_scales[level] = fit
        else:
            gamma = self.codebook.decay
            self.level_scales[level] = gamma * self.level_scales[level] + (1 - gamma) * fit

    def embed(self, codes):
        self._check_codes(codes)
        embeddings = self.codebook.lookup(codes)
        if self.uses_level_scales:
            embeddings = embeddings * self.level_scales[:, None].to(embeddings)
        return embeddings.sum(dim=-2)

    def aggregate(self, codes):
        self._check_codes(codes)
        return aggregate_code_embeddings(self.codebook.lookup(codes), "sum")


class HierarchicalQuantizer(UniCodeQuantizer):
    """HQ (You et al. 2022), two levels: a top map at the code-map size and a bottom map 2x finer.

    The top level quantizes the 2x2-average of the features; the bottom level quantizes what the
    upsampled top leaves at full resolution. Each top position owns its 2x2 block of bottom codes, so
    a position carries D = 1 + 4 codes (8x8 top + 16x16 bottom = 320 codes, the paper's "2:320").
    The decoder reads upsample(top) + bottom; the LLM reads F = e_top + mean(e_bottom of the block).
    """

    codes_per_position = 5
    spatial_factor = 2

    def quantize(self, z):
        _check_features(z, self.codebook.dim)
        batch, height, width, dim = z.shape
        if height % 2 or width % 2:
            raise ValueError(f"HQ needs an even feature map to pool 2x2; got {height}x{width}.")
        top = z.view(batch, height // 2, 2, width // 2, 2, dim).mean(dim=(2, 4))
        top_q, top_codes = self._quantize_level(top.detach())
        top_up = top_q.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
        bottom_q, bottom_codes = self._quantize_level((z - top_up).detach())
        total = top_up + bottom_q
        commitment = 0.5 * (F.mse_loss(top, top_q.detach()) + F.mse_loss(z, total.detach()))
        codes = torch.cat([top_codes.unsqueeze(-1), self._blocks(bottom_codes)], dim=-1)
        return _straight_through(z, total), codes, QuantizerLosses(commitment=commitment)

    @staticmethod
    def _blocks(bottom: torch.Tensor) -> torch.Tensor:
        """(B, 2h, 2w, ...) -> (B, h, w, 4, ...): each top position's 2x2 block, raster order."""
        batch, height, width = bottom.shape[:3]
        rest = bottom.shape[3:]
        blocks = bottom.reshape(batch, height // 2, 2, width // 2, 2, *rest).transpose(2, 3)
        return blocks.reshape(batch, height // 2, width // 2, 4, *rest)

    @staticmethod
    def _unblocks(blocks: torch.Tensor) -> torch.Tensor:
        batch, height, width = blocks.shape[:3]
        rest = blocks.shape[4:]
        grid = blocks.reshape(batch, height, width, 2, 2, *rest).transpose(2, 3)
        return grid.reshape(batch, 2 * height, 2 * width, *rest)

    def embed(self, codes):
        self._check_codes(codes)
        top = self.codebook.lookup(codes[..., 0])
        bottom = self._unblocks(self.codebook.lookup(codes[..., 1:]))
        return top.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2) + bottom

    def aggregate(self, codes):
        self._check_codes(codes)
        return aggregate_code_embeddings(self.codebook.lookup(codes), "hierarchical")


class MultiCodebookQuantizer(UniCodeQuantizer):
    """MCQ (UniTok): the feature is cut into n chunks, chunk i quantized against dimension slice i of the
    LLM rows; F = concatenation, so the aggregated vector is c-dimensional and made only of LLM values.
    """

    def __init__(self, codebook: UnifiedCodebook):
        super().__init__(codebook)
        self.codes_per_position = codebook.num_groups

    def quantize(self, z):
        _check_features(z, self.codebook.dim)
        chunks, codes = [], []
        for group, chunk in enumerate(z.chunk(self.codes_per_position, dim=-1)):
            zq, group_codes = self._quantize_level(chunk.detach(), group)
            chunks.append(zq)
            codes.append(group_codes)
        total = torch.cat(chunks, dim=-1)
        losses = QuantizerLosses(commitment=F.mse_loss(z, total.detach()))
        return _straight_through(z, total), torch.stack(codes, dim=-1), losses

    def embed(self, codes):
        self._check_codes(codes)
        return torch.cat(
            [self.codebook.lookup(codes[..., group], group) for group in range(self.codes_per_position)],
            dim=-1,
        )

    def aggregate(self, codes):
        self._check_codes(codes)
        return aggregate_code_embeddings(self.codebook.lookup(codes), "concat")


QUANTIZER_CLASSES = {
    "vq": VectorQuantizer,
    "rq": ResidualQuantizer,
    "hq": HierarchicalQuantizer,
    "mcq": MultiCodebookQuantizer,
}


# F, the rule that turns a position's D code embeddings into the one vector the LLM reads (the default
# rule of each quantizer is in configuration_unicode.AGGREGATION_BY_QUANTIZER).
AGGREGATION_RULES = ("sum", "hierarchical", "concat")


def aggregate_code_embeddings(embeddings: torch.Tensor, rule: str) -> torch.Tensor:
    """F over full embedding rows `(..., D, c)` -> `(..., c)`.

    One function for both readers of an image: the visual tokenizer (rows of its own codebook) and the
    LLM (rows of its live input-embedding table), so the two can never disagree on F.

    - `"sum"` (VQ, RQ): e_1 + ... + e_D.
    - `"hierarchical"` (HQ): e_top + mean of the 4 bottom codes of the block.
    - `"concat"` (MCQ): slice d of e_d for each d, concatenated, so the result is still c-dimensional.
    """
    if rule == "sum":
        return embeddings.sum(dim=-2)
    if rule == "hierarchical":
        return embeddings[..., 0, :] + embeddings[..., 1:, :].mean(dim=-2)
    if rule == "concat":
        depth, dim = embeddings.shape[-2:]
        if dim % depth:
            raise ValueError(f"concat aggregation needs the dimension {dim} divisible by the {depth} codes.")
        width = dim // depth
        return torch.cat([embeddings[..., d, d * width : (d + 1) * width] for d in range(depth)], dim=-1)
    raise ValueError(f"Unknown aggregation rule {rule!r}; choose one of {AGGREGATION_RULES}.")


def build_quantizer(
    kind: str,
    codebook: UnifiedCodebook,
    depth: int = 4,
    level_scales: bool = False,
    entropy_temperature: float | None = None,
) -> UniCodeQuantizer:
    if kind not in QUANTIZER_CLASSES:
        raise ValueError(f"Unknown quantizer {kind!r}; choose one of {sorted(QUANTIZER_CLASSES)}.")
    if level_scales and kind != "rq":
        raise ValueError(f"level_scales is an RQ option (its levels have different scales); got {kind!r}.")
    if entropy_temperature is not None and kind not in ("vq", "rq"):
        raise ValueError(f"The code entropy loss is a VQ and RQ option; got {kind!r}.")
    if kind == "rq":
        return ResidualQuantizer(
            codebook, depth=depth, level_scales=level_scales, entropy_temperature=entropy_temperature
        )
    if kind == "vq":
        return VectorQuantizer(codebook, entropy_temperature=entropy_temperature)
    return QUANTIZER_CLASSES[kind](codebook)


__all__ = [
    "aggregate_code_embeddings",
    "code_entropy_loss",
    "nearest_code_search",
    "UnifiedCodebook",
    "UniCodeQuantizer",
    "VectorQuantizer",
    "ResidualQuantizer",
    "HierarchicalQuantizer",
    "MultiCodebookQuantizer",
    "build_quantizer",
]
