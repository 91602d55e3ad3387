"""The FLOP counting of benchmarks/gpu_speed.py (the GPU speed script's denominator), on the CPU at tiny sizes."""

from __future__ import annotations

import torch
from _helpers import load_benchmark


def _bench():
    return load_benchmark("gpu_speed")


def test_counts_matmul_and_convolution_flops_exactly():
    bench = _bench()
    linear = torch.nn.Linear(16, 8)
    conv = torch.nn.Conv2d(3, 4, kernel_size=3, padding=1, bias=False)
    with torch.no_grad():
        assert bench.count_flops(lambda: linear(torch.randn(5, 16))) == 2 * 5 * 16 * 8
        assert bench.count_flops(lambda: conv(torch.randn(2, 3, 6, 7))) == 2 * (2 * 6 * 7) * 4 * (3 * 3 * 3)


def test_backward_counts_twice_the_forward_of_a_linear():
    bench = _bench()
    linear = torch.nn.Linear(16, 8, bias=False)
    x = torch.randn(5, 16, requires_grad=True)
    assert bench.count_flops(lambda: linear(x).sum().backward()) == 3 * 2 * 5 * 16 * 8


def test_model_flops_grow_with_the_clip_length(repo_root):
    from autoqvis import build_model, load_config

    bench = _bench()
    model = build_model(load_config(repo_root / "configs" / "toy.yaml")).eval().requires_grad_(False)
    with torch.no_grad():
        one, two = (bench.count_flops(lambda t=t: model.inference(torch.rand(t, 3, 64, 96) * 255)) for t in (1, 2))
    assert one > 1e7
    # the encoder is per frame, the decoder attends to all frames at once: between linear and twice linear
    assert 1.5 * one < two < 2.5 * one


def test_peak_table_knows_the_lent_devices():
    bench = _bench()
    assert bench.peak_for("NVIDIA H200") == (494.7, 989.4)
    assert bench.peak_for("NVIDIA H100 80GB HBM3") == (494.7, 989.4)
    assert bench.peak_for("some CPU") is None
