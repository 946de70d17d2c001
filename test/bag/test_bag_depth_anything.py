"""The bag tool with Depth Anything V2 (metric, relative) and Prompt Depth Anything
checkpoints: outputs match the reference pipeline (``model.infer_depth_anything``; tolerance
as in test/engine/test_families.py), the input is untouched, the summary names the model,
and settings with which a model gives no output are refused before anything is written.
"""

from __future__ import annotations

import numpy as np
import pytest
from bag_builders import (
    CAMERA_INFO,
    IMAGE,
    Msg,
    camera_info_fields,
    image_fields,
    picture,
    read_bag,
    run_cli,
    snapshot,
    write_bag,
)
from model_factories import tiny_depth_anything

from depth_pro_ros.bag import BagOptions, BagSetupError, process_bag
from depth_pro_ros.engine.anchor import AnchorSettings, apply_anchor
from depth_pro_ros.io.messages import depth_image_fields, depth_image_to_array
from depth_pro_ros.model import infer_depth_anything
from depth_pro_ros.stream.anchor import AnchorOptions, dense_prompt

S = 1_000_000_000
T0 = 7_000 * S
RTOL = 1e-4
INPUT = 56
FRAMES = 2
H, W = 48, 64
TOPIC, INFO, ANCHOR = "/cam/image_raw", "/cam/camera_info", "/cam/anchor/depth"
SCALE, SHIFT = 0.8, 0.05  # relative -> metric, in inverse depth


def _relative_anchor(rgb: np.ndarray) -> np.ndarray:
    """A metric depth from the relative model by a known affine map in inverse depth, at
    every 3rd pixel."""
    relative = infer_depth_anything(tiny_depth_anything("relative"), rgb, INPUT).numpy()
    truth = apply_anchor(np.where(relative > 0, 1.0 / relative, np.nan), SCALE, SHIFT)
    anchor = np.full_like(truth, np.nan)
    anchor[::3, ::3] = truth[::3, ::3]
    return anchor.astype(np.float32)


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    """One camera: images with their CameraInfo (fx 55), and per image a
    sparse metric depth anchor (the relative model's depth under a known affine map; the
    prompt model takes the same maps as prompts)."""
    msgs = []
    for i in range(FRAMES):
        t = T0 + i * S // 4
        rgb = picture(30 + i)
        msgs.append(Msg(INFO, CAMERA_INFO, t - 1_000_000,
                        camera_info_fields(55.0, 55.0, 32, 24, W, H), stamp=t))
        msgs.append(Msg(TOPIC, IMAGE, t, image_fields(rgb), stamp=t))
        msgs.append(Msg(ANCHOR, IMAGE, t + 10_000_000,
                        depth_image_fields(_relative_anchor(rgb), "32FC1"), stamp=t))
    return write_bag(tmp_path_factory.mktemp("da") / "in", "mcap", msgs)


def _options(bag, out, checkpoint, **kw) -> BagOptions:
    return BagOptions(input=bag, output=out, checkpoint=checkpoint, image_topics=[TOPIC],
                      device="cpu", progress=False, copy_topics="none", input_size=INPUT, **kw)


def test_metric_model_writes_depth_and_camera_info(bag, da_checkpoints, tmp_path):
    before = snapshot(bag)
    summary = process_bag(_options(bag, tmp_path / "out", da_checkpoints["metric"],
                                   model_type="depth_anything_v2_metric_indoor"))
    out = read_bag(tmp_path / "out")
    model = tiny_depth_anything("metric")
    depths = [depth_image_to_array(m) for _, m, _ in out["/cam/depth"]]
    assert len(depths) == FRAMES
    for i, depth in enumerate(depths):
        np.testing.assert_allclose(
            depth, infer_depth_anything(model, picture(30 + i), INPUT).numpy(), rtol=RTOL)
    assert [m.k[0] for _, m, _ in out["/cam/depth/camera_info"]] == [55.0] * FRAMES
    assert summary.model == "Depth Anything V2 (custom, metric up to 20 m, input 56)"
    assert "model:        Depth Anything V2 (custom, metric" in summary.format()
    assert summary.as_dict()["model"] == summary.model
    assert summary.runtime == "cpu, fp32, backend torch" == summary.as_dict()["runtime"]
    assert snapshot(bag) == before


def test_relative_model_anchored_by_scale_shift_writes_metric_depth(bag, da_checkpoints,
                                                                    tmp_path):
    anchor = AnchorOptions(sync="exact",
                           settings=AnchorSettings(fit="scale_shift", ema_alpha=1.0))
    summary = process_bag(_options(bag, tmp_path / "out", da_checkpoints["relative"],
                                   anchor_topics=[ANCHOR], anchor=anchor))
    out = read_bag(tmp_path / "out")
    model = tiny_depth_anything("relative")
    for i, (_, msg, _) in enumerate(out["/cam/depth"]):
        relative = infer_depth_anything(model, picture(30 + i), INPUT).numpy()
        truth = apply_anchor(np.where(relative > 0, 1.0 / relative, np.nan), SCALE, SHIFT)
        np.testing.assert_allclose(depth_image_to_array(msg), truth, rtol=1e-3)
    stats = summary.cameras[0].anchor_stats()
    assert (stats["anchored"], stats["fits_ok"]) == (FRAMES, FRAMES)
    assert stats["scale_median"] == pytest.approx(SCALE, rel=1e-3)


def test_relative_model_with_allow_relative_writes_depth_relative(bag, da_checkpoints,
                                                                  tmp_path):
    process_bag(_options(bag, tmp_path / "out", da_checkpoints["relative"],
                         allow_relative=True))
    out = read_bag(tmp_path / "out")
    assert "/cam/depth" not in out
    model = tiny_depth_anything("relative")
    for i, (_, msg, _) in enumerate(out["/cam/depth/relative"]):
        values = np.frombuffer(msg.data.tobytes(), np.float32).reshape(H, W)
        np.testing.assert_allclose(
            values, infer_depth_anything(model, picture(30 + i), INPUT).numpy(),
            rtol=RTOL, atol=1e-6)


def test_prompt_model_takes_the_anchor_as_its_prompt(bag, da_checkpoints, tmp_path):
    summary = process_bag(_options(bag, tmp_path / "out", da_checkpoints["prompt"],
                                   anchor_topics=[ANCHOR],
                                   anchor=AnchorOptions(sync="exact")))
    out = read_bag(tmp_path / "out")
    model = tiny_depth_anything("metric", prompt=True)
    for i, (_, msg, _) in enumerate(out["/cam/depth"]):
        prompt = dense_prompt(_relative_anchor(picture(30 + i)), 20)
        np.testing.assert_allclose(
            depth_image_to_array(msg),
            infer_depth_anything(model, picture(30 + i), INPUT, prompt).numpy(), rtol=RTOL)
    assert summary.cameras[0].anchor_stats()["anchored"] == FRAMES


@pytest.mark.parametrize(("key", "kw", "message"), [
    ("relative", {}, "gives relative depth only: set --anchor-topic with --anchor-fit "
                     "scale_shift for metric depth, or --allow-relative"),
    ("relative", {"anchor_topics": [ANCHOR]}, "set --anchor-fit scale_shift"),
    ("prompt", {}, "takes its prompt depth from the anchor input: set --anchor-topic"),
    ("metric", {"model_type": "depth_pro"}, "depth_pro"),
])
def test_settings_without_output_are_refused_before_writing(bag, da_checkpoints, tmp_path,
                                                            key, kw, message):
    with pytest.raises(BagSetupError, match=message):
        process_bag(_options(bag, tmp_path / "out", da_checkpoints[key], **kw))
    assert not (tmp_path / "out").exists()


def test_the_command_line(bag, da_checkpoints, tmp_path):
    base = ["bag", str(bag), "--checkpoint", str(da_checkpoints["relative"]), "--device",
            "cpu", "--image-topic", TOPIC, "--no-progress", "--input-size"]
    code, _, err = run_cli(*base, "50", "-o", str(tmp_path / "a"))
    assert code == 2 and "multiple of 14" in err
    code, _, err = run_cli(*base, str(INPUT), "-o", str(tmp_path / "b"))
    assert code == 2 and "--allow-relative" in err
    code, stdout, err = run_cli(*base, str(INPUT), "-o", str(tmp_path / "c"),
                                "--allow-relative")
    assert code == 0, err
    assert "model:        Depth Anything V2 (custom, relative, input 56)" in stdout


def test_an_exported_onnx_checkpoint_runs_on_onnxruntime(bag, onnx_checkpoint, tmp_path):
    """``bag --checkpoint model.onnx`` with no other flag runs the exported metric model on
    onnxruntime (backend auto) and writes the reference pipeline's depth (issue 25)."""
    pytest.importorskip("onnxruntime")
    code, stdout, err = run_cli(
        "bag", str(bag), "--checkpoint", str(onnx_checkpoint("metric")), "--device", "cpu",
        "--image-topic", TOPIC, "--no-progress", "--input-size", str(INPUT),
        "-o", str(tmp_path / "out"))
    assert code == 0, err
    assert ("model:        Depth Anything V2 (custom, metric up to 20 m, input 56) (cpu, "
            "fp32, backend onnxruntime)") in stdout
    model = tiny_depth_anything("metric")
    out = read_bag(tmp_path / "out")
    assert len(out["/cam/depth"]) == FRAMES
    for i, (_, msg, _) in enumerate(out["/cam/depth"]):
        np.testing.assert_allclose(depth_image_to_array(msg), infer_depth_anything(
            model, picture(30 + i), INPUT).numpy(), rtol=RTOL)
