"""core.device: the precision asked for, and what the CPU (CI has no GPU) makes of it, said in the log line."""
import pytest
import torch

from core.device import cpu_has_fast_bf16, plan_device


@pytest.mark.skipif(torch.cuda.is_available() or torch.backends.mps.is_available(),
                    reason="the CPU branch runs only where no GPU is found (tests/gpu/ checks the CUDA one)")
def test_the_cpu_plan_follows_the_processor_and_says_why():
    fast = cpu_has_fast_bf16()
    auto = plan_device("auto")
    # training stays fp32 unless bf16 is asked for: native bf16 trains faster but to a higher loss
    assert auto.device == "cpu" and auto.precision == "fp32"
    assert ("with native bf16" if fast else "without native bf16") in auto.reason
    assert auto.reason.endswith("answering in bf16" if fast else "; fp32")
    fp16 = plan_device("fp16")  # autocast fp16 is a GPU mode: refused, said, fp32 instead
    assert fp16.precision == "fp32" and "fp16 is not supported on CPU" in fp16.reason
    forced = plan_device("bf16")
    assert forced.precision == "bf16" and forced.reason.split("; ")[-1].startswith("bf16 autocast")
    assert ("emulated" in forced.reason) == (not fast)
    assert plan_device("fp32").precision == "fp32"
