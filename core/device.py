"""Which device and precision to train on, and why (the reason is logged)."""
from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class DevicePlan:
    device: str  # "cuda", "mps" or "cpu"
    precision: str  # "bf16", "fp16" or "fp32"
    reason: str


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 matmul (AVX-512 BF16 or AMX).

    Without it, PyTorch emulates bf16 and a matmul runs about 100x slower than
    fp32 (measured 0.9 vs 115 GFLOP/s on an AVX2-only EPYC), so bf16 decoding would hurt.
    """
    cpuinfo = Path("/proc/cpuinfo")
    if platform.system() == "Linux" and cpuinfo.exists():
        flags = set()
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("flags"):
                flags.update(line.split(":", 1)[1].split())
                break
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    return False


def plan_device(requested: str = "auto") -> DevicePlan:
    """Pick the device, then the precision: `requested` is training.precision."""
    if torch.cuda.is_available():
        bf16_ok = torch.cuda.is_bf16_supported()
        auto = "bf16" if bf16_ok else "fp16"
        name = torch.cuda.get_device_name(0)
        why = f"CUDA device {name}; bf16 {'supported' if bf16_ok else 'not supported'}"
        return DevicePlan("cuda", auto if requested == "auto" else requested, why)
    if torch.backends.mps.is_available():
        # fp16 autocast on MPS is unreliable for training with AdamW; fp32 is the safe default.
        return DevicePlan("mps", "fp32" if requested == "auto" else requested, "Apple MPS device")
    fast = cpu_has_fast_bf16()
    why = "CPU with native bf16 (AVX-512 BF16/AMX)" if fast else "CPU without native bf16 (no AVX-512 BF16/AMX)"
    # Training on a CPU stays fp32 unless bf16 is asked for, native or not: with native bf16, autocast trained
    # 1.1 to 1.2x faster but to a held-out loss about 20 % higher at equal steps (docs/experiments/speed.md).
    # Answers are another matter: they decode from bf16 copies of the weights where the CPU has it natively.
    precision = "fp32" if requested == "auto" else requested
    if precision == "fp16":
        precision, why = "fp32", why + "; fp16 is not supported on CPU"
    if precision == "fp32":
        chosen = ("; training in fp32 (bf16 trains faster here but to a higher loss: training.precision \"bf16\" "
                  "chooses it), answering in bf16") if fast else "; fp32"
    else:
        chosen = "; bf16 autocast" + ("" if fast else ", emulated and about 100x slower")
    return DevicePlan("cpu", precision, why + chosen)
