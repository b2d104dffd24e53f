"""Argument checks shared by every public function: each error names the argument."""
import torch

FP8_DTYPES = (torch.float8_e4m3fn,)
HALF_DTYPES = (torch.bfloat16, torch.float16)


def check_tensor(name, t, *, dtypes=None, ndim=None, device=None, contiguous=False):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if dtypes is not None and t.dtype not in dtypes:
        allowed = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"{name} must have dtype in ({allowed}), got {str(t.dtype).replace('torch.', '')}")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(t.shape)}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} must be on {device}, got {t.device}")
    if contiguous and not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous")
    return t


def check_shape(name, t, shape):
    """`shape` entries of None match any size."""
    ok = t.dim() == len(shape) and all(s is None or s == d for s, d in zip(shape, t.shape))
    if not ok:
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(t.shape)}")
    return t


def check_int(name, value, *, lo=None, hi=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if lo is not None and value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be <= {hi}, got {value}")
    return value


def check_power_of_two(name, value, lo):
    """An int that is a power of two and >= lo (a kernel tile size)."""
    check_int(name, value)
    if value < lo or value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= {lo}, got {value}")
    return value


def check_float(name, value, *, allow_none=False):
    """A Python int or float (bool and numeric strings rejected); returns it as a float."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "a float or None" if allow_none else "a float"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__}")
    return float(value)


def check_same_device(**tensors):
    items = [(n, t) for n, t in tensors.items() if t is not None]
    for n, t in items:  # a non-tensor would otherwise fail below with an AttributeError
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{n} must be a torch.Tensor, got {type(t).__name__}")
    if not items:
        return
    dev = items[0][1].device
    for n, t in items[1:]:
        if t.device != dev:
            raise ValueError(f"{n} is on {t.device} but {items[0][0]} is on {dev}")


def check_int32_metadata(name, t, ndim=1):
    check_tensor(name, t, dtypes=(torch.int32,), ndim=ndim)
    return t


def check_fp4_scales(name, t, fp4_format, scale_layout, public_shape, num_l, rows):
    """FP4 block-scale codes in either layout; returns them as a contiguous uint8 view.

    uint8 codes always; NVFP4 also takes float8_e4m3fn. "preordered_mma" storage is
    (num_l, ceil(rows/128), ceil(groups/4), 32, 4, 4) with groups = public_shape[-1].
    """
    dtypes = (torch.uint8, torch.float8_e4m3fn) if fp4_format == "nvfp4" else (torch.uint8,)
    check_tensor(name, t, dtypes=dtypes, contiguous=True)
    if scale_layout == "public":
        check_shape(name, t, public_shape)
    else:
        groups = public_shape[-1]
        check_shape(name, t, (num_l, -(-rows // 128), -(-groups // 4), 32, 4, 4))
    return t.view(torch.uint8)


TOKEN_INDEX_DTYPES = (torch.int32, torch.int64)


def check_token_slot_metadata(req_to_token, seq_lens, slot_ids, batch):
    """FlashRT/SGLang token-slot layout: req_to_token [max_reqs, max_kv_len] int32, seq_lens/slot_ids [B]."""
    check_tensor("req_to_token", req_to_token, dtypes=(torch.int32,), ndim=2)
    if req_to_token.stride(1) != 1:
        raise ValueError("req_to_token must be contiguous in its last dim")
    check_tensor("seq_lens", seq_lens, dtypes=TOKEN_INDEX_DTYPES, ndim=1)
    check_tensor("slot_ids", slot_ids, dtypes=TOKEN_INDEX_DTYPES, ndim=1)
    check_shape("seq_lens", seq_lens, (batch,))
    check_shape("slot_ids", slot_ids, (batch,))
