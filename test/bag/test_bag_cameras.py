"""``depth-pro-ros bag`` with several cameras: one pass, batches across the cameras.

Three interleaved cameras: ``/a`` and ``/b`` rgb8 of one size, ``/c`` bgr8 of another.
With ``--batch-size 2`` the frames of ``/a`` and ``/b`` run together and ``/c``'s with
each other, although no two consecutive images have the same size; the result is
compared with a run of batch size 1 (the grouping depends only on the message order:
test/engine/test_batch_grouper.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from bag_builders import IMAGE, Msg, image_fields, picture, read_bag, snapshot, write_bag

from depth_pro_ros.bag import BagOptions, process_bag
from depth_pro_ros.io.messages import depth_image_to_array

S = 1_000_000_000
T0 = 3_000 * S
TOPICS = ("/a/image_raw", "/b/image_raw", "/c/image_raw")
FRAMES = 2  # per camera
# Batched and single forward passes sum in another order (test/engine/test_sources.py).
BATCH_RTOL = 1e-4


def _messages() -> list[Msg]:
    msgs = []
    for i in range(FRAMES):
        t = T0 + i * S // 10
        for j, topic in enumerate(("/a/image_raw", "/c/image_raw", "/b/image_raw")):
            if topic == "/c/image_raw":
                fields = image_fields(picture(20 + i, height=60, width=80), "bgr8")
            else:
                fields = image_fields(picture(10 * j + i))
            msgs.append(Msg(topic, IMAGE, t + j * 1_000_000, fields, frame_id=topic[1]))
    return msgs


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return write_bag(tmp_path_factory.mktemp("cams") / "in", "mcap", _messages())


def _run(bag, checkpoint, out, batch_size: int):
    summary = process_bag(BagOptions(input=bag, output=out, checkpoint=checkpoint,
                                     image_topics=list(TOPICS), device="cpu",
                                     batch_size=batch_size, progress=False))
    return summary, read_bag(out)


def test_equal_sizes_from_different_cameras_share_batches(bag, tiny_checkpoint, tmp_path):
    before = snapshot(bag)
    single, single_out = _run(bag, tiny_checkpoint, tmp_path / "single", 1)
    batched, batched_out = _run(bag, tiny_checkpoint, tmp_path / "batched", 2)

    assert single.batch_sizes == {1: 3 * FRAMES}
    # /a with /b twice, /c with itself once: one pass of the network fewer than frames.
    assert batched.batch_sizes == {2: 3 * FRAMES // 2}
    assert "batches:      3 of 2" in batched.format()
    assert batched.frames_out == 3 * FRAMES and not batched.skipped

    for ns in ("/a", "/b", "/c"):
        one = single_out[f"{ns}/depth"]
        two = batched_out[f"{ns}/depth"]
        # Same log times (so the same order), same count.
        assert [t for t, _, _ in one] == [t for t, _, _ in two] and len(one) == FRAMES
        for (_, m1, _), (_, m2, _) in zip(one, two):
            assert m1.header.frame_id == m2.header.frame_id == ns[1]
            np.testing.assert_allclose(depth_image_to_array(m2), depth_image_to_array(m1),
                                       rtol=BATCH_RTOL)
        infos = [m.k[0] for _, m, _ in batched_out[f"{ns}/depth/camera_info"]]
        singles = [m.k[0] for _, m, _ in single_out[f"{ns}/depth/camera_info"]]
        np.testing.assert_allclose(infos, singles, rtol=BATCH_RTOL)
    assert snapshot(bag) == before
