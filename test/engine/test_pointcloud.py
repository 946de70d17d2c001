"""Tests for depth back-projection, colour packing and the host record layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depth_pro_ros.engine.focal import Intrinsics
from depth_pro_ros.engine.pointcloud import (
    depth_to_points,
    pack_rgb,
    record_dtype,
    to_numpy_record,
)

INTR = Intrinsics(fx=50.0, fy=40.0, cx=15.5, cy=11.0, width=32, height=24)


def pixel_grid(intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Column and row indices (float64), each of shape (H, W)."""
    return np.meshgrid(
        np.arange(intr.width, dtype=np.float64), np.arange(intr.height, dtype=np.float64)
    )


def test_fronto_parallel_plane_exact() -> None:
    # Power-of-two focal and half-integer centre: every value is exact in float32.
    intr = Intrinsics(fx=4.0, fy=8.0, cx=1.5, cy=2.0, width=5, height=4)
    cloud = depth_to_points(torch.full((4, 5), 2.0), intr)
    u, v = pixel_grid(intr)
    xyz = cloud.xyz.numpy()
    assert cloud.xyz.shape == (4, 5, 3) and cloud.xyz.dtype == torch.float32
    np.testing.assert_array_equal(xyz[..., 0], (u - 1.5) * 2.0 / 4.0)
    np.testing.assert_array_equal(xyz[..., 1], (v - 2.0) * 2.0 / 8.0)
    np.testing.assert_array_equal(xyz[..., 2], 2.0)
    assert xyz[2, 0, 0] == -0.75 and xyz[0, 4, 1] == -0.5
    assert (cloud.height, cloud.width) == (4, 5) and cloud.intrinsics == intr
    assert cloud.rgb_packed is None


def test_fronto_parallel_plane_realistic_intrinsics() -> None:
    cloud = depth_to_points(torch.full((24, 32), 2.0), INTR)
    u, v = pixel_grid(INTR)
    np.testing.assert_allclose(cloud.xyz[..., 0].numpy(), (u - 15.5) * 2.0 / 50.0, atol=1e-6)
    np.testing.assert_allclose(cloud.xyz[..., 1].numpy(), (v - 11.0) * 2.0 / 40.0, atol=1e-6)


def test_tilted_plane_satisfies_plane_equation() -> None:
    a, b = 3.0, 0.5  # plane Z = a + b * Y
    u, v = pixel_grid(INTR)
    yn = (v - INTR.cy) / INTR.fy
    # On the ray (X, Y, Z) = Z * (xn, yn, 1): Z = a + b * yn * Z  =>  Z = a / (1 - b * yn).
    depth = torch.from_numpy((a / (1.0 - b * yn)).astype(np.float32))
    xyz = depth_to_points(depth, INTR).xyz.double().numpy()
    residual = xyz[..., 2] - a - b * xyz[..., 1]
    assert np.abs(residual).max() < 1e-5
    # The points also stay on their pixel's ray.
    xn = (u - INTR.cx) / INTR.fx
    np.testing.assert_allclose(xyz[..., 0], xn * xyz[..., 2], atol=1e-5)


def test_invalid_and_out_of_range_depth_gives_nan() -> None:
    intr = Intrinsics.from_focal(10.0, 4, 2)
    depth = torch.tensor(
        [[math.nan, math.inf, 0.0, -1.0], [0.4, 0.5, 5.0, 5.5]], dtype=torch.float32
    )
    xyz = depth_to_points(depth, intr, min_depth=0.5, max_depth=5.0).xyz
    invalid = torch.tensor([[True, True, True, True], [True, False, False, True]])
    assert torch.isnan(xyz[invalid]).all()
    assert torch.isfinite(xyz[~invalid]).all()
    # Default range: only NaN, inf and non-positive depth are invalid; -inf too.
    depth[0, 1] = -math.inf
    xyz = depth_to_points(depth, intr).xyz
    assert torch.isnan(xyz[0]).all() and torch.isfinite(xyz[1]).all()
    # The pixel at the principal point (u - cx == 0) must still become NaN when invalid.
    centre = torch.ones(2, 4)
    centre[1, 2] = math.nan
    assert torch.isnan(depth_to_points(centre, intr).xyz[1, 2]).all()


@pytest.mark.parametrize("k", [2, 3, 5])
def test_decimation_matches_undecimated_cloud(k: int) -> None:
    generator = torch.Generator().manual_seed(k)
    depth = 1.0 + 4.0 * torch.rand(24, 32, generator=generator)
    rgb = torch.randint(0, 256, (24, 32, 3), dtype=torch.uint8, generator=generator)
    full = depth_to_points(depth, INTR, rgb=rgb)
    dec = depth_to_points(depth, INTR, decimation=k, rgb=rgb)
    h, w = math.ceil(24 / k), math.ceil(32 / k)
    assert dec.xyz.shape == (h, w, 3) and (dec.height, dec.width) == (h, w)
    assert torch.equal(dec.xyz, full.xyz[::k, ::k])
    assert torch.equal(
        dec.rgb_packed.view(torch.int32), full.rgb_packed[::k, ::k].view(torch.int32)
    )
    assert dec.intrinsics == Intrinsics(
        fx=50.0 / k, fy=40.0 / k, cx=15.5 / k, cy=11.0 / k, width=w, height=h
    )
    # Back-projecting the decimated depth with the decimated intrinsics agrees too.
    again = depth_to_points(depth[::k, ::k].contiguous(), dec.intrinsics)
    torch.testing.assert_close(again.xyz, dec.xyz, rtol=1e-6, atol=1e-6)


def test_rgb_packing_bits() -> None:
    rgb = torch.tensor([[[255, 128, 1], [0, 0, 0], [1, 2, 3]]], dtype=torch.uint8)
    packed = pack_rgb(rgb)
    assert packed.dtype == torch.float32 and packed.shape == (1, 3)
    bits = packed.numpy().view(np.uint32)
    assert bits.tolist() == [[0x00FF8001, 0, 0x00010203]]

    intr = Intrinsics.from_focal(10.0, 3, 1)
    cloud = depth_to_points(torch.ones(1, 3), intr, rgb=rgb)
    assert cloud.rgb_packed.numpy().view(np.uint32).tolist() == [[0x00FF8001, 0, 0x00010203]]


@pytest.mark.parametrize(("with_rgb", "names"), [(False, "xyz"), (True, ("x", "y", "z", "rgb"))])
def test_record_dtype_layout(with_rgb: bool, names) -> None:
    dtype = record_dtype(with_rgb)
    assert dtype.names == tuple(names)
    assert dtype.itemsize == 4 * len(names)  # packed: no padding between points
    for i, name in enumerate(names):
        sample, offset = dtype.fields[name][:2]
        assert (sample, offset) == (np.dtype(np.float32), 4 * i)
        assert sample.isnative


@pytest.mark.parametrize("with_rgb", [False, True])
def test_numpy_record_layout(with_rgb: bool) -> None:
    depth = torch.tensor([[1.0, math.nan], [2.0, 3.0], [4.0, 0.0]])
    intr = Intrinsics(fx=2.0, fy=2.0, cx=0.5, cy=1.0, width=2, height=3)
    rgb = torch.tensor(
        [[[255, 128, 1], [1, 2, 3]], [[4, 5, 6], [7, 8, 9]], [[10, 11, 12], [0, 0, 255]]],
        dtype=torch.uint8,
    )
    cloud = depth_to_points(depth, intr, rgb=rgb if with_rgb else None)
    record = to_numpy_record(cloud)

    assert record.shape == (6,) and record.flags.c_contiguous
    assert record.dtype == record_dtype(with_rgb)

    # Row-major: point i is pixel (row i // W, column i % W).
    xyz = cloud.xyz.numpy().reshape(-1, 3)
    for axis, name in enumerate("xyz"):
        np.testing.assert_array_equal(record[name], xyz[:, axis])
    assert record["z"][2] == 2.0 and np.isnan(record["x"][1]) and np.isnan(record["z"][5])

    raw = np.frombuffer(record.tobytes(), dtype=np.uint32).reshape(6, -1)
    if with_rgb:
        assert raw[0, 3] == 0x00FF8001 and raw[5, 3] == 0x000000FF
    else:
        assert raw.shape == (6, 3)


def test_record_of_decimated_cloud_is_contiguous() -> None:
    cloud = depth_to_points(torch.ones(24, 32), INTR, decimation=3)
    record = to_numpy_record(cloud)
    assert record.shape == (8 * 11,) and record.flags.c_contiguous
    assert len(record.tobytes()) == 8 * 11 * 12


def test_half_precision_depth_is_promoted() -> None:
    cloud = depth_to_points(torch.full((24, 32), 2.0, dtype=torch.float16), INTR)
    assert cloud.xyz.dtype == torch.float32


def test_non_contiguous_rgb_packs_the_same() -> None:
    # A non-contiguous (transposed view) rgb must pack the same as a contiguous copy.
    rgb = torch.randint(0, 256, (32, 24, 3), dtype=torch.uint8).transpose(0, 1)
    a = depth_to_points(torch.ones(24, 32), INTR, rgb=rgb).rgb_packed
    b = depth_to_points(torch.ones(24, 32), INTR, rgb=rgb.contiguous()).rgb_packed
    assert torch.equal(a.view(torch.int32), b.view(torch.int32))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"depth": torch.ones(24, 31)}, "intrinsics are for 32x24"),
        ({"depth": torch.ones(1, 24, 32)}, "2-D"),
        ({"depth": torch.ones(24, 32, dtype=torch.int32)}, "floating"),
        ({"decimation": 0}, "decimation"),
        ({"decimation": 1.5}, "decimation"),
        ({"min_depth": 2.0, "max_depth": 2.0}, "min_depth < max_depth"),
        ({"min_depth": math.nan}, "min_depth < max_depth"),
        ({"rgb": torch.zeros(24, 32, 4, dtype=torch.uint8)}, "rgb must have shape"),
        ({"rgb": torch.zeros(24, 32, 3, dtype=torch.float32)}, "uint8"),
    ],
)
def test_input_validation(kwargs: dict, match: str) -> None:
    args = {"depth": torch.ones(24, 32), "intrinsics": INTR}
    args.update(kwargs)
    depth, intr = args.pop("depth"), args.pop("intrinsics")
    with pytest.raises(ValueError, match=match):
        depth_to_points(depth, intr, **args)


def test_invalid_intrinsics_rejected() -> None:
    bad = Intrinsics(fx=0.0, fy=1.0, cx=0.0, cy=0.0, width=32, height=24)
    with pytest.raises(ValueError, match="focal"):
        depth_to_points(torch.ones(24, 32), bad)


@pytest.mark.cuda
def test_cuda_matches_cpu() -> None:
    generator = torch.Generator().manual_seed(0)
    depth = 1.0 + 4.0 * torch.rand(24, 32, generator=generator)
    depth[2, 4] = math.nan  # kept by decimation 2: NaN must survive on both devices
    depth[6, 8] = 0.2  # kept too, and below min_depth
    rgb = torch.randint(0, 256, (24, 32, 3), dtype=torch.uint8, generator=generator)  # CPU
    kwargs = dict(min_depth=0.5, max_depth=4.5, decimation=2, rgb=rgb)
    cpu = depth_to_points(depth, INTR, **kwargs)
    gpu = depth_to_points(depth.cuda(), INTR, **kwargs)
    # The cloud lives on the depth's device; the CPU colours were moved there.
    assert gpu.xyz.device.type == "cuda" and gpu.rgb_packed.device.type == "cuda"
    assert (gpu.height, gpu.width, gpu.intrinsics) == (cpu.height, cpu.width, cpu.intrinsics)
    # x = (u - cx) z / fx is a product and a quotient of float32 values: each device
    # rounds at most a few ulps differently (|x|, |y| < 2 m, z < 5 m here), so a
    # relative 1e-6 (8 ulps) plus 1e-6 m absolute bounds the difference.
    gpu_xyz, cpu_xyz = gpu.xyz.cpu().numpy(), cpu.xyz.numpy()
    np.testing.assert_array_equal(np.isnan(gpu_xyz), np.isnan(cpu_xyz))
    assert np.isnan(cpu_xyz[1, 2]).all() and np.isnan(cpu_xyz[3, 4]).all()
    assert np.isfinite(np.delete(cpu_xyz.reshape(-1, 3), [1 * 16 + 2, 3 * 16 + 4], 0)).all()
    np.testing.assert_allclose(gpu_xyz, cpu_xyz, rtol=1e-6, atol=1e-6)
    # z is the depth itself and the colours are integers: no rounding at all.
    np.testing.assert_array_equal(gpu_xyz[..., 2], cpu_xyz[..., 2])
    assert torch.equal(gpu.rgb_packed.cpu().view(torch.int32), cpu.rgb_packed.view(torch.int32))
    record_gpu, record_cpu = to_numpy_record(gpu), to_numpy_record(cpu)
    assert record_gpu.dtype == record_cpu.dtype == record_dtype(True)
    np.testing.assert_array_equal(record_gpu["rgb"].view(np.uint32),
                                  record_cpu["rgb"].view(np.uint32))
