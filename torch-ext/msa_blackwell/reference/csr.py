"""PyTorch reference of the q2k -> k2q CSR builder (contract §2.2): the CPU path and the oracle."""
import torch


def default_total_rows(total_k, kv_block_size, batch):
    """Contract §3: exact when total_k is a multiple of the block, else an upper bound."""
    if total_k % kv_block_size == 0:
        return total_k // kv_block_size
    return -(-(total_k + batch * (kv_block_size - 1)) // kv_block_size)


def blocks_per_request(cu_seqlens_k, kv_block_size):
    lens = (cu_seqlens_k[1:] - cu_seqlens_k[:-1]).long().clamp(min=0)
    return (lens + kv_block_size - 1) // kv_block_size


def row_table(nb):
    """[B, max_nb] row id of (request b, block j), block-major round robin (§2.2); -1 if j >= nb[b]."""
    b = nb.numel()
    max_nb = int(nb.max()) if b else 0
    j = torch.arange(max_nb, device=nb.device)
    live = nb.view(b, 1) > j.view(1, max_nb)  # [B, max_nb]
    rows_before_j = torch.cumsum(live.sum(0), 0) - live.sum(0)  # sum_b' min(nb[b'], j)
    earlier_live = torch.cumsum(live.long(), 0) - live.long()  # #{b' < b : nb[b'] > j}
    return torch.where(live, rows_before_j.view(1, max_nb) + earlier_live, -1)


def row_owners(nb, total_rows):
    """(row_request, row_block) [total_rows] int32: the (b, j) of each row, -1 for padding rows."""
    table = row_table(nb)
    request = torch.full((total_rows,), -1, dtype=torch.long, device=nb.device)
    block = torch.full((total_rows,), -1, dtype=torch.long, device=nb.device)
    live = (table >= 0) & (table < total_rows)
    bs, js = torch.nonzero(live, as_tuple=True)
    request[table[bs, js]] = bs
    block[table[bs, js]] = js
    return request.to(torch.int32), block.to(torch.int32)


def query_requests(cu_seqlens_q, total_q):
    """Request of each query (upper bound search over cu_seqlens_q) and whether it has one."""
    t = torch.arange(total_q, device=cu_seqlens_q.device)
    req = torch.searchsorted(cu_seqlens_q.long().contiguous(), t, right=True) - 1
    batch = cu_seqlens_q.numel() - 1
    has = (req >= 0) & (req < batch)
    return req.clamp(0, max(batch - 1, 0)), has


def build_k2q_csr(q2k_indices, cu_seqlens_q, cu_seqlens_k, kv_block_size, total_rows):
    """Returns (row_ptr [Hkv, R+1], q_indices [Hkv, total_q*topK], qsplit [Hkv, total_q*topK],
    split_counts [total_q, Hkv], row_request [R], row_block [R]), all int32.

    Edges whose row is >= total_rows (possible only when total_rows undercounts) are dropped.
    """
    hkv, total_q, topk = q2k_indices.shape
    dev = q2k_indices.device
    cu_q = cu_seqlens_q.to(dev).long()
    cu_k = cu_seqlens_k.to(dev).long()
    nb = blocks_per_request(cu_k, kv_block_size)
    table = row_table(nb)
    req, has_req = query_requests(cu_q, total_q)
    q_local = torch.arange(total_q, device=dev) - cu_q[req] if total_q else req

    ids = q2k_indices.long()
    nb_q = torch.where(has_req, nb[req] if nb.numel() else req, 0).view(1, total_q, 1)
    valid = (ids >= 0) & (ids < nb_q)
    # Sort each query's ids: duplicates become neighbours, and the rank of the first copy is its slot.
    big = torch.iinfo(torch.long).max
    sorted_ids, perm = torch.sort(torch.where(valid, ids, big), dim=-1, stable=True)
    first = sorted_ids != big
    first[..., 1:] &= sorted_ids[..., 1:] != sorted_ids[..., :-1]
    if table.numel():
        rows_sorted = table[req.view(1, total_q, 1).expand_as(sorted_ids), sorted_ids.clamp(max=table.shape[1] - 1)]
    else:
        rows_sorted = torch.full_like(sorted_ids, -1)
    edge = first & (rows_sorted >= 0) & (rows_sorted < total_rows)
    # Rows grow with the block id, so dropped rows are a suffix and the kept slots stay 0..n-1.
    slot_sorted = torch.cumsum(edge.long(), -1) - 1

    row_ptr = torch.zeros(hkv, total_rows + 1, dtype=torch.int32, device=dev)
    q_indices = torch.full((hkv, total_q * topk), -1, dtype=torch.int32, device=dev)
    qsplit = torch.full_like(q_indices, -1)
    split_counts = edge.sum(-1).t().to(torch.int32).contiguous()
    del perm  # the sorted order is all that matters below
    for g in range(hkv):
        e = edge[g]
        rows = rows_sorted[g][e]
        qs = q_local.view(total_q, 1).expand(total_q, topk)[e]
        slots = slot_sorted[g][e]
        order = torch.argsort(rows * (1 << 24) + qs)
        n = rows.numel()
        counts = torch.bincount(rows, minlength=total_rows)
        row_ptr[g, 1:] = torch.cumsum(counts, 0).to(torch.int32)
        q_indices[g, :n] = qs[order].to(torch.int32)
        qsplit[g, :n] = (qs[order] | (slots[order] << 24)).to(torch.int32)
    row_request, row_block = row_owners(nb, total_rows)
    return row_ptr, q_indices, qsplit, split_counts, row_request, row_block
