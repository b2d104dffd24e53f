"""Triton kernels. Each module lists every launch config it can use in `gate_cases()`."""
