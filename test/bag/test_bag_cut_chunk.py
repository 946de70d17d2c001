"""A recording cut inside its only MCAP chunk: the complete messages at the start of the
cut chunk are recovered -- uncompressed up to the cut, zstd and lz4 as far as their
streams decode -- and the note says what was lost (issue 24, data loss).

rosbags writes uncompressed and zstd chunks; lz4 chunks (which rosbag2 can write) are
made by re-writing the same records with the ``mcap`` package. 30 frames of 64x48 make
one chunk of about 280 kB: more than one zstd block (128 kB) and several lz4 blocks
(64 kB), the units in which a compressed stream can be decoded.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest
from bag_builders import (
    IMAGE,
    Msg,
    image_fields,
    mcap_file,
    mcap_records,
    picture,
    truncate,
    write_bag,
    write_mcap_zstd,
)
from harness.memory import traced_peak

from depth_pro_ros.bag import BagInputError
from depth_pro_ros.bag.process import _default_typestore
from depth_pro_ros.bag.reader import open_input

S = 1_000_000_000
CAM = "/cam/image_raw"
FRAMES = 30


def _rewrite_lz4(src: Path, dst: Path) -> None:
    """The records of ``src`` re-written with lz4-compressed chunks, all in one chunk."""
    from mcap.reader import make_reader
    from mcap.writer import CompressionType, Writer

    with src.open("rb") as f_in, dst.open("wb") as f_out:
        reader = make_reader(f_in)
        writer = Writer(f_out, chunk_size=1 << 24, compression=CompressionType.LZ4)
        writer.start(profile="ros2", library="test")
        schemas, channels = {}, {}
        for schema, channel, message in reader.iter_messages(log_time_order=False):
            if schema.id not in schemas:
                schemas[schema.id] = writer.register_schema(schema.name, schema.encoding,
                                                            schema.data)
            if channel.id not in channels:
                channels[channel.id] = writer.register_channel(
                    channel.topic, channel.message_encoding, schemas[schema.id],
                    channel.metadata)
            writer.add_message(channels[channel.id], message.log_time, message.data,
                               message.publish_time, message.sequence)
        writer.finish()


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """compression -> (complete bag folder, its .mcap, {log time: message bytes})."""
    root = tmp_path_factory.mktemp("one_chunk")
    msgs = [Msg(CAM, IMAGE, (100 + i) * S, image_fields(picture(i))) for i in range(FRAMES)]
    bags = {"none": write_bag(root / "none", "mcap", msgs),
            "zstd": write_mcap_zstd(root / "zstd", msgs)}
    lz4 = root / "lz4"
    shutil.copytree(bags["none"], lz4)
    _rewrite_lz4(mcap_file(bags["none"]), mcap_file(lz4))
    bags["lz4"] = lz4
    from rosbags.highlevel import AnyReader

    with AnyReader([bags["none"]]) as reader:
        raw = {t: bytes(d) for _, t, d in reader.messages()}
    out = {}
    for name, bag in bags.items():
        chunks = [r for r in mcap_records(mcap_file(bag)) if r[1] == 0x06]
        assert len(chunks) == 1, (name, chunks)  # everything in one chunk
        out[name] = (bag, mcap_file(bag), chunks[0], raw)
    return out


def _decodable(body: bytes) -> tuple[bytes, str]:
    """The records' bytes an independent decoder gets from a cut Chunk body (zstandard's
    one-shot decompressobj, lz4's frame decompressor without limits)."""
    (clen,) = struct.unpack_from("<I", body, 28)
    compression = body[32: 32 + clen].decode()
    stream = body[32 + clen + 8:]
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(stream), compression
    if compression == "lz4":
        import lz4.frame

        return lz4.frame.LZ4FrameDecompressor().decompress(stream), compression
    return stream, compression


def _complete_times(data: bytes) -> list[int]:
    """Log times of the message records wholly inside ``data``."""
    pos, out = 0, []
    while pos + 9 <= len(data):
        op, length = struct.unpack_from("<BQ", data, pos)
        if pos + 9 + length > len(data):
            break
        if op == 0x05:
            out.append(struct.unpack_from("<Q", data, pos + 9 + 6)[0])
        pos += 9 + length
    return out


@pytest.mark.parametrize("compression", ["none", "zstd", "lz4"])
def test_cut_inside_the_only_chunk_recovers_its_complete_messages(recordings, tmp_path,
                                                                  compression):
    bag, file, (offset, _, length), raw = recordings[compression]
    content = file.read_bytes()
    recovered_any = False
    for fraction in (0.1, 0.35, 0.6, 0.85):
        cut = offset + 9 + int(length * fraction)
        folder = tmp_path / f"cut{fraction}"
        shutil.copytree(bag, folder)
        truncate(mcap_file(folder), cut)
        data, found = _decodable(content[offset + 9: cut])
        assert found == ("" if compression == "none" else compression)
        want = _complete_times(data)
        if not want:
            with pytest.raises(BagInputError, match="no readable message"):
                open_input(folder, _default_typestore())
            continue
        recovered_any = True
        reader = open_input(folder, _default_typestore())
        try:
            got = [(t, bytes(d)) for _, t, d in reader.messages()]
            note = reader.note
        finally:
            reader.close()
        assert got == [(t, raw[t]) for t in want], (compression, fraction)
        assert f"{len(want)} complete message(s) at its start recovered" in note, note
        assert f"metadata.yaml counts {FRAMES} messages: {FRAMES - len(want)} lost" in note
    assert recovered_any


def _chunk_body(compression: str, declared: int, data: bytes) -> bytes:
    """An MCAP Chunk record body (spec: start, end, uncompressed size, crc, compression,
    records) holding ``data`` as its compressed records."""
    name = compression.encode()
    return (struct.pack("<QQQI", 0, 0, declared, 0) + struct.pack("<I", len(name)) + name
            + struct.pack("<Q", len(data)) + data)


@pytest.mark.parametrize("compression", ["zstd", "lz4", "bz2"])
def test_chunk_sizes_are_bounded_before_decompressing(compression):
    """A chunk that declares more than MAX_BLOCK_BYTES is refused before anything is
    allocated; one whose stream inflates past its declared size (a bomb: 32 MiB of zeros
    compress to kilobytes) stops at the declared size. Measured with tracemalloc: the
    peak stays far below what the stream inflates to."""
    import bz2

    import lz4.frame
    import zstandard

    from depth_pro_ros.bag.mcap_index import _chunk_records, _cut_chunk_data
    from depth_pro_ros.bag.recovery import MAX_BLOCK_BYTES, DamagedBlock, decompress_bounded

    bomb = bytes(32 << 20)
    packed = {"zstd": zstandard.ZstdCompressor().compress, "lz4": lz4.frame.compress,
              "bz2": bz2.compress}[compression](bomb)
    assert len(packed) < 4 << 20
    with traced_peak() as peak:
        assert len(decompress_bounded(compression, packed, 1000)) == 1001
        with pytest.raises(DamagedBlock, match="more than the 256 MiB"):
            decompress_bounded(compression, packed, MAX_BLOCK_BYTES + 1)
        if compression != "bz2":  # MCAP chunks: zstd and lz4
            with pytest.raises(DamagedBlock, match="1001 bytes after decompression"):
                _chunk_records(_chunk_body(compression, 1000, packed))
            with pytest.raises(DamagedBlock, match="more than the 256 MiB"):
                _chunk_records(_chunk_body(compression, 1 << 40, packed))
            data, size = _cut_chunk_data(_chunk_body(compression, 1000, packed[:-5]))
            assert size == 1000 and len(data) <= 1000
    assert peak.bytes < 8 << 20, peak.bytes  # the stream inflates to 32 MiB
