"""``depth-pro-ros image`` with hostile command lines and folders: option ranges shared
with the node, inputs never written over, existing outputs replaced only when asked, and
file system errors as one line with no partial output (in process, real files)."""

from __future__ import annotations

import pytest
from test_cli import _main, _photo

from depth_pro_ros.cli.parser import build_parser
from depth_pro_ros.engine import ranges


@pytest.mark.parametrize("argv", [
    ["image", "p.png", "--input-size", "1400000"],
    ["image", "p.png", "--input-size", "-14"],
    ["image", "p.png", "--max-input-pixels", str(2**41)],
    ["image", "p.png", "--max-input-pixels", "0"],
    ["image", "p.png", "--focal-px", "1e7"],
    ["image", "p.png", "--focal-px", "0"],
    ["bag", "in", "-o", "out", "--batch-size", "65"],
    ["bag", "in", "-o", "out", "--input-size", "8204"],
    ["checkpoint", "--random", "tiny", "-o", "x.pt", "--seed", str(2**64)],
], ids=lambda argv: " ".join(argv[-2:]))
def test_options_out_of_the_node_ranges_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[-2]}: must be" in err and "Traceback" not in err, err


def test_option_ranges_are_the_node_parameter_ranges():
    """The node's table takes its numbers from engine/ranges.py, as the options do (a
    number typed into either again would show here), and the highest values parse."""
    from depth_pro_ros.ros.parameters import PARAMETERS

    spec = {p.name: (p.low, p.high) for p in PARAMETERS}
    assert spec["input_size"] == ranges.INPUT_SIZE
    assert spec["max_input_pixels"] == ranges.MAX_INPUT_PIXELS
    assert spec["fixed_focal_px"] == ranges.FOCAL_PX
    assert spec["max_batch_size"][1] == ranges.BATCH_SIZE[1]
    highest = build_parser().parse_args(["image", "p.png", "--input-size", "8190",
                                         "--max-input-pixels", str(2**40)])
    assert (highest.input_size, highest.max_input_pixels) == (8190, 2**40)


def test_an_input_is_never_written_over(tiny_checkpoint, tmp_path):
    """`image in/p.png in/p_depth_color.png -o in --overwrite`: p's preview would replace
    the second photo. p is refused (one error, none of its outputs written), the other
    photo is processed, and the photo is unchanged. (Without --overwrite the existing
    name refuses the run: test_cli's existing-outputs test.)"""
    p, _ = _photo(tmp_path, 1, "p.png")
    victim, _ = _photo(tmp_path, 2, "p_depth_color.png")
    original = victim.read_bytes()
    common = ("--checkpoint", str(tiny_checkpoint), "--device", "cpu", "-o", str(tmp_path))
    code, _, err = _main("image", str(p), str(victim), *common, "--overwrite")
    assert code == 1 and victim.read_bytes() == original
    assert f"{victim} is an input of this run: it is never replaced" in err, err
    assert "1 of 2 photo(s) failed" in err
    names = sorted(f.name for f in tmp_path.iterdir())
    assert names == ["p.png", "p_depth_color.png", "p_depth_color_depth.npy",
                     "p_depth_color_depth_color.png", "p_depth_color_depth_mm.png"], names


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_an_unusable_output_folder_is_one_line_before_any_photo(tiny_checkpoint, tmp_path,
                                                                where):
    p, _ = _photo(tmp_path, 1, "p.png")
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    outdir = blocker if where == "file" else blocker / "sub"
    code, stdout, err = _main("image", str(p), "--checkpoint", str(tiny_checkpoint),
                              "--device", "cpu", "-o", str(outdir))
    assert code == 1 and stdout == ""
    assert err.count("\n") == 1 and f"cannot use output folder {outdir}" in err, err
    assert "no photo was processed" in err and "Errno" not in err


def test_prompt_files_count_against_max_input_pixels(da_checkpoints, tmp_path):
    """A prompt is read header first with the photos' pixel bound: a 16-bit PNG
    declaring 16000 x 16000 fails that photo in one line (no decoding, no inference)."""
    import struct
    import zlib

    p, _ = _photo(tmp_path, 1, "p.png")
    ihdr = struct.pack(">IIBBBBB", 16000, 16000, 16, 0, 0, 0, 0)
    prompt = tmp_path / "prompt.png"
    prompt.write_bytes(b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr
                       + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + bytes(500))
    code, _, err = _main("image", str(p), "--prompt-depth", str(prompt), "--checkpoint",
                         str(da_checkpoints["prompt"]), "--device", "cpu",
                         "-o", str(tmp_path / "out"))
    assert code == 1 and "declares 16000 x 16000" in err and "Traceback" not in err, err
    assert "1 of 1 photo(s) failed" in err
