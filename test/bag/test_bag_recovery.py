"""Truncated MCAP bags and unindexed ROS 1 bags: every complete message before the cut
is recovered, processed and copied, and the run says what was recovered.

The bag (``three_chunk_recording``): ``/cam/image_raw`` (64x48, processed) with one
``/cam/camera_info``, ``/imu``, and ``/wide/image_raw`` (400x300, only copied), whose size
splits the 8 frames into chunks of 3, 3 and 2 frames while the network only sees the
small images. Cuts are made on the real files at chunk, summary and
data-end boundaries, with and without ``metadata.yaml``.

Depth is compared with the untruncated bag's depth *exactly*: both runs are in this
process, on the same CPU, with the same checkpoint, batch size 1 (one frame per forward
pass, so a frame's result does not depend on its neighbours), the same pixel bytes and
the same focal history (the recovered frames are a prefix of the full run), and only the
reader differs -- so any difference would be a reading error, not rounding.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from bag_builders import (
    IMAGE,
    IMU,
    Msg,
    mcap_chunk_messages,
    mcap_file,
    mcap_records,
    read_bag,
    ros1_records,
    three_chunk_recording,
    truncate,
    unindex_ros1,
    write_bag,
)

from depth_pro_ros.bag import BagInputError, BagOptions, process_bag
from depth_pro_ros.bag.process import _default_typestore
from depth_pro_ros.bag.reader import open_input
from depth_pro_ros.cli import main
from depth_pro_ros.io.messages import depth_image_to_array

S = 1_000_000_000
T0 = 2_000 * S
CAM, INFO, WIDE = "/cam/image_raw", "/cam/camera_info", "/wide/image_raw"
FRAMES = 8
CHUNK, DATA_END = 0x06, 0x0F


def _messages() -> list[Msg]:
    return three_chunk_recording(FRAMES, T0)


def _options(src: Path, out: Path, checkpoint: Path) -> BagOptions:
    return BagOptions(input=src, output=out, checkpoint=checkpoint, image_topics=[CAM],
                      device="cpu", progress=False)


@pytest.fixture(scope="module")
def full(tiny_checkpoint, tmp_path_factory):
    """The complete mcap bag, its processed output (read back) and its message order."""
    root = tmp_path_factory.mktemp("full")
    src = write_bag(root / "rec", "mcap", _messages())
    summary = process_bag(_options(src, root / "out", tiny_checkpoint))
    assert summary.frames_out == FRAMES and summary.recovery is None
    return {"src": src, "in": read_bag(src), "out": read_bag(root / "out")}


def _cuts(path: Path) -> dict[str, int]:
    """Named cut points of an mcap file, from its real record layout."""
    records = mcap_records(path)
    chunks = [r for r in records if r[1] == CHUNK]
    data_end = next(r for r in records if r[1] == DATA_END)
    summary = [r for r in records if r[0] > data_end[0]]
    assert len(chunks) == 3, "the wide images no longer split the bag into 3 chunks"
    return {
        "inside_first_chunk": chunks[0][0] + 1000,
        "chunk_header": chunks[1][0] + 5,  # inside the 9-byte record header
        "mid_chunk": chunks[2][0] + chunks[2][2] // 2,
        "before_data_end": data_end[0],
        "after_data_end": summary[0][0],
        "mid_summary": summary[len(summary) // 2][0] + 3,
        "before_footer": records[-1][0] + 4,
    }


def _message_ends(path: Path, chunk: tuple[int, int, int]) -> list[tuple[int, int]]:
    """(log time, file offset where its record ends) of an uncompressed chunk's messages,
    from the MCAP layout (chunk header: 3 x u64, u32 crc, compression string, u64 length)."""
    import struct

    offset, _, length = chunk
    body = path.read_bytes()[offset + 9: offset + 9 + length]
    (clen,) = struct.unpack_from("<I", body, 28)
    assert clen == 0, "the fixture's chunks are uncompressed"
    data_at, pos, out = offset + 9 + 32 + clen + 8, 0, []
    records = body[32 + clen + 8:]
    while pos < len(records):
        op, rlen = struct.unpack_from("<BQ", records, pos)
        if op == 0x05:
            out.append((struct.unpack_from("<Q", records, pos + 9 + 6)[0],
                        data_at + pos + 9 + rlen))
        pos += 9 + rlen
    return out


def _expected(path: Path, full_in: dict, cut: int) -> list[tuple[str, int]]:
    """(topic, log time) of the messages whose records end before ``cut``, in order: the
    chunks that end before it, and the complete records at the start of a cut chunk."""
    times = set()
    for chunk in (r for r in mcap_records(path) if r[1] == CHUNK):
        if chunk[0] + 9 + 40 <= cut:  # its header is whole
            times |= {t for t, end in _message_ends(path, chunk) if end <= cut}
    return [(topic, t) for topic, t in full_in["__order__"] if t in times]


def _cut_bag(full: dict, root: Path, cut: int, metadata: bool) -> Path:
    bag = root / "rec"
    bag.mkdir(parents=True)
    shutil.copy(mcap_file(full["src"]), bag)
    if metadata:
        shutil.copy(full["src"] / "metadata.yaml", bag)
    truncate(mcap_file(bag), cut)
    return bag


@pytest.mark.parametrize("metadata", [False, True], ids=["no_metadata", "metadata"])
def test_reader_recovers_exactly_the_complete_chunks(full, tmp_path, metadata):
    """Every cut point, as a folder and as a bare file: the complete chunks' messages,
    byte for byte, in log-time order; nothing else."""
    src_file = mcap_file(full["src"])
    raw = {t: data for topic in (CAM, INFO, WIDE, "/imu") for t, _, data in full["in"][topic]}
    for name, cut in _cuts(src_file).items():
        bag = _cut_bag(full, tmp_path / name, cut, metadata)
        want = _expected(src_file, full["in"], cut)
        for path in (bag, mcap_file(bag)):
            if not want:
                with pytest.raises(BagInputError, match="no readable message"):
                    open_input(path, _default_typestore())
                continue
            reader = open_input(path, _default_typestore())
            try:
                got = [(c.topic, t, bytes(data)) for c, t, data in reader.messages()]
                assert [(topic, t) for topic, t, _ in got] == want, name
                assert all(data == raw[t] for _, t, data in got), name
                topics = reader.topics
                assert {k: v.msgcount for k, v in topics.items()} == {
                    k: sum(1 for topic, _ in want if topic == k) for k in topics}
                assert topics[CAM].msgtype == IMAGE and topics["/imu"].msgtype == IMU
                assert reader.note.startswith(f"{mcap_file(bag)} is truncated (no summary "
                                              f"section): recovered {len(want)} complete "
                                              "messages of 4 topics up to log time "
                                              f"{want[-1][1] * 1e-9:.9f} s"), reader.note
                cut_chunk = name in ("inside_first_chunk", "chunk_header", "mid_chunk")
                assert ("was cut:" in reader.note or "incomplete record" in reader.note) \
                    == cut_chunk, reader.note
                if name in ("inside_first_chunk", "mid_chunk"):  # the cut chunk's head
                    chunk = max(r for r in mcap_records(src_file)
                                if r[1] == CHUNK and r[0] < cut)
                    kept = sum(end <= cut for _, end in _message_ends(src_file, chunk))
                    assert kept and f"{kept} complete message(s) at its start recovered" \
                        in reader.note, reader.note
            finally:
                reader.close()


@pytest.mark.parametrize(("cut_name", "metadata", "via_cli"), [
    ("mid_chunk", False, True),
    ("mid_summary", True, False),
    ("after_data_end", False, False),
])
def test_truncated_bag_is_processed_like_the_complete_one(
        full, tiny_checkpoint, tmp_path, cut_name, metadata, via_cli):
    src_file = mcap_file(full["src"])
    cut = _cuts(src_file)[cut_name]
    bag = _cut_bag(full, tmp_path / "in", cut, metadata)
    want = _expected(src_file, full["in"], cut)
    frames = [t for topic, t in want if topic == CAM]
    assert 0 < len(frames) <= FRAMES
    out = tmp_path / "out"
    if via_cli:
        err, stdout = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(stdout):
            code = main(["bag", str(bag), "-o", str(out), "--checkpoint", str(tiny_checkpoint),
                         "--image-topic", CAM, "--device", "cpu", "--no-progress"])
        assert code == 0, err.getvalue()
        lines = err.getvalue().splitlines()
        text = stdout.getvalue()
        assert f"frames out:   {len(frames)}" in text
    else:
        lines = []
        summary = process_bag(_options(bag, out, tiny_checkpoint), report=lines.append)
        assert summary.frames_in == summary.frames_out == len(frames)
        assert summary.recovery and summary.recovery in lines
        text = summary.format()
    note = next(line for line in lines if "is truncated (no summary section)" in line)
    assert f"recovered {len(want)} complete messages of 4 topics" in note
    assert f"  recovered:    {note}" in text

    res = read_bag(out)
    assert [t for t, _, _ in res["/cam/depth"]] == frames
    ref = {t: msg for t, msg, _ in full["out"]["/cam/depth"]}
    for t, msg, _ in res["/cam/depth"]:
        np.testing.assert_array_equal(depth_image_to_array(msg), depth_image_to_array(ref[t]))
    ref_info = {t: msg for t, msg, _ in full["out"]["/cam/depth/camera_info"]}
    for t, msg, _ in res["/cam/depth/camera_info"]:
        np.testing.assert_array_equal(msg.k, ref_info[t].k)
    for topic in (CAM, INFO, WIDE, "/imu"):  # copied byte for byte, up to the cut
        kept = [t for name, t in want if name == topic]
        assert [(t, raw) for t, _, raw in res[topic]] == [
            (t, raw) for t, _, raw in full["in"][topic] if t in kept]
    order = [t for _, t in res["__order__"]]
    assert order == sorted(order)


# ------------------------------------------------------------------------ ROS 1


@pytest.fixture(scope="module")
def ros1_bag(tmp_path_factory):
    return write_bag(tmp_path_factory.mktemp("ros1") / "rec", "ros1", _messages())


def _ros1_chunks(path: Path) -> list[tuple[int, int, int]]:
    chunks = [r for r in ros1_records(path) if r[1] == 0x05]
    assert len(chunks) == 3, "the wide images no longer split the bag into 3 chunks"
    return chunks


def test_unindexed_ros1_bag_is_recovered(ros1_bag, full, tiny_checkpoint, tmp_path):
    """``rosbag record`` killed inside its third chunk: the first two chunks (6 frames)
    are processed, with the depth of the complete bag, and copied."""
    chunks = _ros1_chunks(ros1_bag)
    bag = tmp_path / "killed.bag"
    shutil.copy(ros1_bag, bag)
    unindex_ros1(bag, chunks[2][0] + chunks[2][2] // 2)
    out = tmp_path / "out"
    lines = []
    summary = process_bag(_options(bag, out, tiny_checkpoint), report=lines.append)
    frames = [t for t, _, _ in full["in"][CAM]][:6]
    kept = [t for _, t in full["in"]["__order__"] if t < T0 + 6 * S // 4]
    assert summary.frames_out == 6
    assert summary.recovery.startswith(
        f"{bag} is not indexed (the recorder did not close it): recovered {len(kept)} complete "
        f"messages of 4 topics up to log time {(T0 + 5 * S // 4 + 3_000_000) * 1e-9:.9f} s; "
        f"the last incomplete chunk was dropped (byte offset {chunks[2][0]})"), summary.recovery
    assert summary.recovery in lines
    res, inp = read_bag(out), read_bag(ros1_bag)
    assert [t for t, _, _ in res["/cam/depth"]] == frames
    ref = {t: msg for t, msg, _ in full["out"]["/cam/depth"]}
    for t, msg, _ in res["/cam/depth"]:  # same pixels as the mcap bag, same focal history
        np.testing.assert_array_equal(depth_image_to_array(msg), depth_image_to_array(ref[t]))
    # Copied as rosbags-convert would: ROS 2 definitions, the same values.
    assert [t for t, _, _ in res["/imu"]] == [t for t, _, _ in inp["/imu"]][:6]
    for (_, a, _), (_, b, _) in zip(inp[WIDE], res[WIDE]):
        np.testing.assert_array_equal(a.data, b.data)
    assert len(res[WIDE]) == 6 and len(res[INFO]) == 1
    np.testing.assert_array_equal(res[INFO][0][1].k, inp[INFO][0][1].K)


@pytest.mark.parametrize("state", ["index_pos_zero", "index_cut_off"])
def test_ros1_reader_without_index(ros1_bag, full, tmp_path, state):
    """No index at all (killed recorder), or an index_pos pointing past the end (a copy
    cut short after a clean close): all complete chunks are read, in log-time order."""
    chunks = _ros1_chunks(ros1_bag)
    end = chunks[2][0] + chunks[2][2]
    bag = tmp_path / "cut.bag"
    shutil.copy(ros1_bag, bag)
    if state == "index_pos_zero":
        unindex_ros1(bag, end)
    else:
        truncate(bag, end + 10)  # the index starts right after the last chunk's index data
    reader = open_input(bag)
    try:
        assert "is not indexed" in reader.note
        got = [(c.topic, t) for c, t, _ in reader.messages()]
        assert got == full["in"]["__order__"]
        for conn, _, raw in reader.messages([c for c in reader.connections if c.topic == CAM]):
            assert reader.deserialize(raw, conn.msgtype).width == 64
    finally:
        reader.close()


def test_unrecoverable_ros1_bag_says_reindex(ros1_bag, tmp_path):
    bag = tmp_path / "stub.bag"
    shutil.copy(ros1_bag, bag)
    unindex_ros1(bag, _ros1_chunks(ros1_bag)[0][0] + 100)  # killed inside the first chunk
    with pytest.raises(BagInputError, match=r"not indexed .*run `rosbag reindex .*stub.bag` "
                                            r"\(ROS 1\) and retry"):
        open_input(bag)


def test_split_bag_without_metadata(full, tmp_path):
    """A bag split in two files (``rec_9``, ``rec_10``: numeric order) whose recorder died
    inside the second file's last chunk: the first file is read through its summary, the
    second by scanning; together in log-time order."""
    msgs = three_chunk_recording(FRAMES, T0)
    half = T0 + 4 * S // 4
    bag = tmp_path / "rec"
    bag.mkdir()
    for name, part in (("rec_9", [m for m in msgs if m.log_time < half]),
                       ("rec_10", [m for m in msgs if m.log_time >= half])):
        written = write_bag(tmp_path / name, "mcap", part)
        shutil.copy(mcap_file(written), bag / f"{name}.mcap")
    second = bag / "rec_10.mcap"
    (chunk,) = [r for r in mcap_records(second) if r[1] == CHUNK][-1:]
    cut = chunk[0] + chunk[2] // 2
    kept = {t for msgs_ in mcap_chunk_messages(bag / "rec_9.mcap") for _, t in msgs_}
    for msgs_ in mcap_chunk_messages(second)[:-1]:
        kept |= {t for _, t in msgs_}
    # and the complete messages at the start of the cut chunk
    kept |= {t for t, end in _message_ends(second, chunk) if end <= cut}
    truncate(second, cut)
    reader = open_input(bag, _default_typestore())
    try:
        assert reader.note.startswith(f"{second} is truncated (no summary section): "
                                      f"recovered {len(kept)} complete messages"), reader.note
        assert [(c.topic, t) for c, t, _ in reader.messages()] == [
            (topic, t) for topic, t in full["in"]["__order__"] if t in kept]
    finally:
        reader.close()


def test_complete_bag_without_metadata(full, tmp_path):
    bag = tmp_path / "rec"
    bag.mkdir()
    shutil.copy(mcap_file(full["src"]), bag)
    reader = open_input(bag, _default_typestore())
    try:
        total = len(full["in"]["__order__"])
        assert reader.note == (f"{bag} could not be opened normally (no metadata.yaml): "
                               f"recovered {total} complete messages of 4 topics up to log "
                               f"time {full['in']['__order__'][-1][1] * 1e-9:.9f} s")
        assert [(c.topic, t) for c, t, _ in reader.messages()] == full["in"]["__order__"]
    finally:
        reader.close()


def test_chunks_overlapping_in_time_are_merged_like_rosbags(tmp_path):
    """Messages written out of log-time order (chunks overlap in time): the chunk reader
    yields rosbags' order for the complete bag, and the same order once truncated."""
    from bag_builders import ROS2, image_fields, picture, serialize
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin
    from rosbags.rosbag2 import Writer as Writer2

    times = [T0 + k * S for k in (0, 6, 1, 7, 2, 8, 3, 9, 4, 10, 5, 11, 5)]
    bag = tmp_path / "rec"
    with Writer2(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(WIDE, IMAGE, typestore=ROS2)
        for i, t in enumerate(times):  # ~360 kB each: 3 per chunk
            writer.write(conn, t, serialize("mcap", Msg(WIDE, IMAGE, t, image_fields(
                picture(i, 300, 400)))))
    with AnyReader([bag]) as reader:
        want = [(t, bytes(raw)) for _, t, raw in reader.messages()]
    assert [t for t, _ in want] == sorted(times)
    reader = open_input(bag, _default_typestore())
    try:
        assert type(reader.reader).__name__ == "McapChunkReader"
        assert [(t, bytes(raw)) for _, t, raw in reader.messages()] == want
        window = [t for _, t, _ in reader.messages(start=T0 + 2 * S, stop=T0 + 6 * S)]
        assert window == [t for t, _ in want if T0 + 2 * S <= t < T0 + 6 * S]
    finally:
        reader.close()
    records = mcap_records(mcap_file(bag))
    data_end = next(r for r in records if r[1] == DATA_END)
    truncate(mcap_file(bag), data_end[0])
    reader = open_input(bag, _default_typestore())
    try:
        assert "is truncated" in reader.note
        assert [(t, bytes(raw)) for _, t, raw in reader.messages()] == want
    finally:
        reader.close()
