"""PyTorch references for block top-k selection (the CPU path and the test oracle).

Ranking rule shared with the native kernels: a candidate beats another when its score is
higher, or equal with a lower block id. NaN and -inf scores are never candidates (+inf is).
"""
import torch


def _rank_candidates(scores, candidate):
    """Column order [..., K] best first: candidates by (score desc, id asc), then the rest."""
    keyed = torch.where(candidate, scores, torch.full_like(scores, -float("inf")))
    # A stable descending sort keeps equal scores in ascending id order.
    order = torch.sort(keyed, dim=-1, descending=True, stable=True).indices
    # Non-candidates may tie with candidates at -inf only when the candidate is itself -inf,
    # which is excluded, so every candidate precedes every non-candidate.
    return order


def _pad_last(t, width, value):
    if t.shape[-1] >= width:
        return t[..., :width]
    pad = torch.full(t.shape[:-1] + (width - t.shape[-1],), value, dtype=t.dtype, device=t.device)
    return torch.cat([t, pad], dim=-1)


def sparse_topk_select(max_score, topk, num_valid_pages=None, force_begin_blocks=0, force_end_blocks=0):
    """max_score [H, K, T] fp32 -> [T, H, topk] int32, ascending ids, -1 tail.

    Ids >= num_valid_pages (int or [T]; clipped to [0, K]) are excluded. Blocks
    [0, fb) and [nvp - fe, nvp) (clipped to the valid range) are always kept; the other
    topk - #forced slots take the best finite candidates in between.
    """
    h, k, t = max_score.shape
    dev = max_score.device
    scores = max_score.permute(2, 0, 1).float()  # [T, H, K]
    if num_valid_pages is None:
        nvp = torch.full((t,), k, dtype=torch.long, device=dev)
    elif isinstance(num_valid_pages, torch.Tensor):
        nvp = num_valid_pages.to(device=dev, dtype=torch.long).clamp(0, k)
    else:
        nvp = torch.full((t,), min(max(int(num_valid_pages), 0), k), dtype=torch.long, device=dev)
    nvp = nvp.view(t, 1, 1)
    ids = torch.arange(k, device=dev).view(1, 1, k)
    begin_end = torch.clamp(nvp, max=force_begin_blocks)  # forced begin blocks [0, begin_end)
    end_start = torch.maximum(nvp - force_end_blocks, begin_end)  # forced end blocks [end_start, nvp)
    forced = (ids < begin_end) | ((ids >= end_start) & (ids < nvp))
    candidate = (ids >= begin_end) & (ids < end_start) & ~torch.isnan(scores) & (scores != -float("inf"))
    need = topk - begin_end - (nvp - end_start)  # [T, 1, 1]
    order = _rank_candidates(scores, candidate)
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(k, device=dev).expand_as(order))
    keep = forced | (candidate & (rank < need))
    kept_ids = torch.where(keep, ids.expand_as(keep), torch.full_like(order, k))
    kept_ids = torch.sort(kept_ids, dim=-1).values
    kept_ids = _pad_last(kept_ids, topk, k)
    return torch.where(kept_ids < k, kept_ids, -1).to(torch.int32).contiguous()


def native_topk_from_scores(score, seq_lens, block_size, topk):
    """score [heads, batch, max_blocks] fp32 -> [heads, batch, topk] int32.

    Descending score, ties to the lower block id, -1 padded; blocks >=
    ceil(seq_len / block_size) and NaN / -inf scores are never selected.
    """
    heads, batch, max_blocks = score.shape
    dev = score.device
    lens = seq_lens.to(device=dev, dtype=torch.long).clamp(min=0)
    nb = torch.clamp((lens + block_size - 1) // block_size, max=max_blocks).view(1, batch, 1)
    ids = torch.arange(max_blocks, device=dev).view(1, 1, max_blocks)
    s = score.float()
    candidate = (ids < nb) & ~torch.isnan(s) & (s != -float("inf"))
    order = _rank_candidates(s, candidate)
    chosen = torch.where(torch.gather(candidate, -1, order), order, -1)
    return _pad_last(chosen, topk, -1).to(torch.int32).contiguous()
