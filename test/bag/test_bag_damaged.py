"""Damaged inputs: decompression bombs, corrupt MCAP chunks, a corrupt sqlite3 database,
a corrupt ROS 1 chunk. Good data is processed; bad data is skipped and counted, or the
run stops with one clean line (exit 1) and leaves no output.

The damage is done on real bag files written with rosbags: bytes overwritten inside a
chunk, an overflow page pointer of the database changed.
"""

from __future__ import annotations

import contextlib
import io
import struct
from pathlib import Path

import pytest
from bag_builders import (
    COMPRESSED,
    Msg,
    add_mcap_chunk_crcs,
    break_sqlite_overflow_chain,
    compressed_fields,
    mcap_file,
    mcap_records,
    overwrite,
    picture,
    read_bag,
    serialize,
    three_chunk_recording,
    truncate,
    write_bag,
    write_mcap_zstd,
    write_ros1_bz2,
)
from harness.bombs import header_bombs

from depth_pro_ros.bag import BagDataError, BagOptions, process_bag
from depth_pro_ros.bag.process import _default_typestore
from depth_pro_ros.bag.reader import open_input
from depth_pro_ros.cli import main

S = 1_000_000_000
T0 = 2_000 * S
CAM, INFO, WIDE = "/cam/image_raw", "/cam/camera_info", "/wide/image_raw"


def _options(src: Path, out: Path, checkpoint: Path, **kw) -> BagOptions:
    return BagOptions(input=src, output=out, checkpoint=checkpoint, image_topics=[CAM],
                      device="cpu", progress=False, **kw)


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["bag", *args, "--device", "cpu", "--no-progress"])
    return code, out.getvalue(), err.getvalue()


def _nothing_written(out: Path) -> bool:
    return not out.exists() and not [p for p in out.parent.iterdir() if ".partial-" in p.name]


def _chunks(path: Path) -> list[tuple[int, int, int]]:
    chunks = [r for r in mcap_records(path) if r[1] == 0x06]
    assert len(chunks) == 3
    return chunks


def _rosbags_fails(path: Path, topic: str) -> str:
    """The damage is real: rosbags itself cannot read ``topic``; returns its error."""
    from rosbags.highlevel import AnyReader

    with AnyReader([path], default_typestore=_default_typestore()) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        with pytest.raises(Exception) as info:  # noqa: PT011 -- whatever rosbags raises
            for _ in reader.messages(conns):
                pass
    return str(info.value)


# ------------------------------------------------------------ decompression bombs

BOMB_TOPIC = "/cam/image_raw/compressed"


def _u8(data: bytes):
    import numpy as np

    return np.frombuffer(data, np.uint8).copy()


@pytest.fixture(scope="module")
def bomb_bag(tmp_path_factory):
    """Good PNG frames (#0, #2, #5) with a bomb of each format between them."""
    bombs = header_bombs(40_000)
    kinds = ["good", "pnm", "good", "png", "jpeg", "good", "bmp"]
    msgs = []
    for i, kind in enumerate(kinds):
        t = T0 + i * S // 4
        fields = compressed_fields(picture(i)) if kind == "good" else \
            {"format": kind, "data": _u8(bombs[kind])}
        msgs.append(Msg(BOMB_TOPIC, COMPRESSED, t, fields))
    return write_bag(tmp_path_factory.mktemp("bombs") / "in", "mcap", msgs), kinds


def test_decompression_bombs_are_skipped_and_counted(bomb_bag, tiny_checkpoint, tmp_path):
    src, kinds = bomb_bag
    reports = []
    summary = process_bag(BagOptions(input=src, output=tmp_path / "out",
                                     checkpoint=tiny_checkpoint, image_topics=[BOMB_TOPIC],
                                     device="cpu", progress=False), report=reports.append)
    good = [i for i, k in enumerate(kinds) if k == "good"]
    bombs = [i for i, k in enumerate(kinds) if k != "good"]
    assert summary.frames_in == len(kinds) and summary.frames_out == len(good)
    # The decoder reads each bomb's declared size from its header and refuses it there.
    assert dict(summary.skipped) == {"too_large": len(bombs)}
    for i in bombs:
        (line,) = [r for r in reports if f"message #{i} " in r]
        assert "declares 40000 x 40000 = 1,600,000,000 pixels" in line, line
    assert "skipped:      4 (too_large 4)" in summary.format()
    inp, res = read_bag(src), read_bag(tmp_path / "out")
    assert [t for t, _, _ in res["/cam/depth"]] == [inp[BOMB_TOPIC][i][0] for i in good]
    # The bombs are copied like any other message: the output is a faithful copy.
    assert [raw for _, _, raw in res[BOMB_TOPIC]] == [raw for _, _, raw in inp[BOMB_TOPIC]]


def test_decompression_bomb_under_strict_is_one_clean_error(bomb_bag, tiny_checkpoint,
                                                            tmp_path):
    src, _ = bomb_bag
    out = tmp_path / "out"
    code, _, err = _cli(str(src), "-o", str(out), "--checkpoint", str(tiny_checkpoint),
                        "--image-topic", BOMB_TOPIC, "--strict")
    assert code == 1, err
    assert "Traceback" not in err and f"{BOMB_TOPIC} message #1 " in err and "(--strict)" in err
    assert _nothing_written(out)


# ------------------------------------------------------------ damaged MCAP chunks


def test_bad_compression_in_the_camera_info_chunk(tiny_checkpoint, tmp_path):
    """zstd data overwritten in the first chunk (it holds the CameraInfo and frames 0-2):
    rosbags fails in the CameraInfo pre-pass; here the chunk is skipped in both passes,
    reported once with what it held, and frames 3-7 are processed."""
    src = write_mcap_zstd(tmp_path / "in", three_chunk_recording())
    path = mcap_file(src)
    first = _chunks(path)[0]
    overwrite(path, first[0] + first[2] // 2, b"\xff" * 64)
    _rosbags_fails(src, INFO)
    clean = _clean_copy(tmp_path)
    reports = []
    summary = process_bag(_options(src, tmp_path / "out", tiny_checkpoint),
                          report=reports.append)
    assert summary.frames_in == summary.frames_out == 5
    assert summary.cameras[0].camera_info == {}
    (line,) = [r for r in reports if "is damaged" in r]
    assert line.startswith(f"{path.name}: chunk at byte offset {first[0]} (log time "
                           f"{T0 * 1e-9:.9f} .. ")
    assert (("zstd data does not decompress" in line or "after decompression" in line)
            and "3 message(s) of /cam/image_raw" in line
            and "1 message(s) of /cam/camera_info" in line), line
    assert summary.damaged == [line]
    assert "damaged:      1 unreadable part(s) of the input skipped" in summary.format()
    res = read_bag(tmp_path / "out")
    assert [t for t, _, _ in res["/cam/depth"]] == [T0 + i * S // 4 for i in range(3, 8)]
    assert INFO not in res  # its only message was in the damaged chunk
    assert [(t, raw) for t, _, raw in res["/imu"]] == [
        (t, raw) for t, _, raw in clean["/imu"] if t >= T0 + 3 * S // 4]


def _clean_copy(tmp_path: Path) -> dict:
    """The undamaged recording's messages, for comparison."""
    return read_bag(write_bag(tmp_path / "clean", "mcap", three_chunk_recording()))


def test_checksum_mismatch_in_a_middle_chunk(tiny_checkpoint, tmp_path):
    """A checksummed bag (as rosbag2 writes them) with bytes flipped in chunk 2 of 3: the
    command goes on with frames 0-2 and 6-7 and says which chunk it skipped."""
    src = write_bag(tmp_path / "in", "mcap", three_chunk_recording())
    path = mcap_file(src)
    add_mcap_chunk_crcs(path)
    middle = _chunks(path)[1]
    overwrite(path, middle[0] + middle[2] // 2, b"\x00\x01\x02\x03")
    assert "checksum mismatch" in _rosbags_fails(src, CAM)
    out = tmp_path / "out"
    code, stdout, err = _cli(str(src), "-o", str(out), "--checkpoint", str(tiny_checkpoint),
                             "--image-topic", CAM)
    assert code == 0, err
    assert "Traceback" not in err
    assert f"{path.name}: chunk at byte offset {middle[0]} " in err
    assert "(checksum mismatch); skipped: 3 message(s) of /cam/image_raw, 3 message(s) of " \
           "/imu, 3 message(s) of /wide/image_raw" in err
    assert "frames out:   5" in stdout and "damaged:      1 unreadable part(s)" in stdout
    res = read_bag(out)
    assert [t for t, _, _ in res["/cam/depth"]] == [T0 + i * S // 4 for i in (0, 1, 2, 6, 7)]
    assert len(res[WIDE]) == len(res["/imu"]) == 5 and len(res[INFO]) == 1


def test_damaged_chunk_under_strict_is_one_clean_error(tiny_checkpoint, tmp_path):
    src = write_mcap_zstd(tmp_path / "in", three_chunk_recording())
    path = mcap_file(src)
    first = _chunks(path)[0]
    overwrite(path, first[0] + first[2] // 2, b"\xff" * 64)
    out = tmp_path / "out"
    with pytest.raises(BagDataError, match=rf"chunk at byte offset {first[0]} .*is damaged"
                                           r".*\(--strict\)"):
        process_bag(_options(src, out, tiny_checkpoint, strict=True))
    assert _nothing_written(out)


def test_truncated_bag_with_a_damaged_chunk(tmp_path):
    """No summary to tell what a damaged chunk held: it is reported by offset, and the
    chunks around it are still read."""
    src = write_bag(tmp_path / "in", "mcap", three_chunk_recording())
    path = mcap_file(src)
    add_mcap_chunk_crcs(path)
    chunks = _chunks(path)
    overwrite(path, chunks[1][0] + chunks[1][2] // 2, b"\x00\x01\x02\x03")
    truncate(path, chunks[2][0] + chunks[2][2] + 10)  # inside the message index after it
    (src / "metadata.yaml").unlink()
    reader = open_input(src, _default_typestore())
    try:
        lines = []
        reader.damage.attach(lines.append, strict=False)
        assert lines == [f"{path.name}: chunk at byte offset {chunks[1][0]} is damaged "
                         "(checksum mismatch); skipped: its topics are unknown"]
        assert "recovered 16 complete messages of 4 topics" in reader.note, reader.note
        times = [t for c, t, _ in reader.messages([c for c in reader.connections
                                                   if c.topic == CAM])]
        assert times == [T0 + i * S // 4 for i in (0, 1, 2, 6, 7)]
    finally:
        reader.close()


# ------------------------------------------------------------ sqlite3 and ROS 1


def test_corrupt_sqlite_row_is_skipped_and_counted(tiny_checkpoint, tmp_path):
    """The overflow chain under frame 2's image points nowhere: rosbags' single query
    fails there; read row by row, that message alone is skipped and reported."""
    msgs = three_chunk_recording(4)
    src = write_bag(tmp_path / "in", "sqlite3", msgs)
    db = next(src.glob("*.db3"))
    frame2 = next(m for m in msgs if m.topic == CAM and m.log_time == T0 + S // 2)
    break_sqlite_overflow_chain(db, serialize("sqlite3", frame2))
    assert "malformed" in _rosbags_fails(src, CAM)
    out = tmp_path / "out"
    code, stdout, err = _cli(str(src), "-o", str(out), "--checkpoint", str(tiny_checkpoint),
                             "--image-topic", CAM)
    assert code == 0 and "Traceback" not in err, err
    (line,) = [x for x in err.splitlines() if "is damaged" in x]
    assert line.startswith(f"{db.name}: message row ") and line.endswith(
        f" (log time {frame2.log_time * 1e-9:.9f} s) is damaged (database disk image is "
        "malformed); skipped: 1 message(s) of /cam/image_raw"), line
    assert "frames out:   3" in stdout and "damaged:      1 unreadable part(s)" in stdout
    res, clean = read_bag(out), _clean_sqlite(tmp_path, msgs)
    assert [t for t, _, _ in res["/cam/depth"]] == [T0 + i * S // 4 for i in (0, 1, 3)]
    assert [raw for _, _, raw in res[CAM]] == [
        raw for t, _, raw in clean[CAM] if t != frame2.log_time]
    assert [raw for _, _, raw in res[WIDE]] == [raw for _, _, raw in clean[WIDE]]


def _clean_sqlite(tmp_path: Path, msgs: list[Msg]) -> dict:
    return read_bag(write_bag(tmp_path / "clean", "sqlite3", msgs))


def test_corrupt_sqlite_page_at_open_is_one_clean_error(tiny_checkpoint, tmp_path):
    """The root page of the messages table is garbage: refused when opening."""
    import sqlite3

    src = write_bag(tmp_path / "in", "sqlite3", three_chunk_recording(3))
    db = next(src.glob("*.db3"))
    with contextlib.closing(sqlite3.connect(db)) as con:
        (root,), = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'messages'")
    data = bytearray(db.read_bytes())
    page_size = struct.unpack_from(">H", data, 16)[0]
    data[(root - 1) * page_size] = 0x42  # not a b-tree page type
    db.write_bytes(bytes(data))
    code, _, err = _cli(str(src), "-o", str(tmp_path / "out"), "--image-topic", CAM,
                        "--checkpoint", str(tiny_checkpoint))
    assert code == 1 and "Traceback" not in err, err
    assert f"cannot read bag {src}" in err and "malformed" in err and ".recover" in err


def test_corrupt_ros1_chunk_is_one_clean_error(tiny_checkpoint, tmp_path):
    """An indexed ROS 1 bag whose second chunk no longer decompresses: rosbags fails in
    the main pass after frame 2; the run stops with one line that says where, and the
    --end it suggests processes the part before the damage."""
    from bag_builders import ros1_records

    src = write_ros1_bz2(tmp_path / "in", three_chunk_recording())
    second = [r for r in ros1_records(src) if r[1] == 0x05][1]
    overwrite(src, second[0] + second[2] // 2, b"\xff" * 64)
    _rosbags_fails(src, CAM)
    out = tmp_path / "out"
    args = [str(src), "-o", str(out), "--checkpoint", str(tiny_checkpoint), "--image-topic",
            CAM]
    code, _, err = _cli(*args)
    assert code == 1 and "Traceback" not in err, err
    (line,) = [x for x in err.splitlines() if "corrupt" in x]
    last_good = T0 + 2 * S // 4 + 3_000_000  # frame 2's wide image
    assert line.startswith(f"depth-pro-ros: error: input bag {src} is corrupt: reading "
                           f"stopped after the "
                           f"message logged at {last_good * 1e-9:.9f} s ("), line
    assert line.endswith(f"; process the part before it with --end "
                         f"{(last_good + 1 - T0) * 1e-9:.9f}"), line
    assert _nothing_written(out)
    code, stdout, err = _cli(*args, "--end", line.split("--end ")[1])
    assert code == 0, err
    assert "frames out:   3" in stdout
    assert [t for t, _, _ in read_bag(out)[WIDE]][-1] == last_good
