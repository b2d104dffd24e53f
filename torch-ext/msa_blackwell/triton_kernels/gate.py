"""What the SM12x compile gate (tools/sm12x_gate.py) compiles for a kernel module.

Every module in this package that defines a `@triton.jit` kernel also defines
`gate_cases() -> list[GateCase]`, one case per (specialisation, config) the
launcher can pick, autotune lists included.
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GateCase:
    name: str  # kernel name plus a short config tag, e.g. "decode[bf16,D128,G16,N64]"
    fn: object  # the @triton.jit function
    signature: dict  # every argument -> Triton type string ("*bf16", "i32", "fp32", "constexpr")
    constexprs: dict = field(default_factory=dict)  # constexpr argument -> value
    num_warps: int = 4
    num_stages: int = 2
    # Integer arguments the launcher guarantees divisible by 16 (validated strides):
    # Triton specialises them at launch, as it does every 16-byte-aligned pointer.
    aligned_ints: tuple = ()
