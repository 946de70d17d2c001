"""Fixtures shared by the node, bag and CLI tests: small random-weight checkpoints written
by the product's own stand-in command (``depth-pro-ros checkpoint --random tiny``), so
every test that loads one also shows that command's files load in that tool."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from model_factories import tiny_model

__all__ = ["tiny_model", "tiny_checkpoint", "write_stand_in"]


def pytest_configure(config) -> None:
    """Under pytest-xdist, share the cores between the workers: each worker and every
    process it starts (nodes, CLI runs) computes on its share, instead of every one
    starting a thread per core and all of them contending."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def write_stand_in(path: Path, model_type: str = "depth_pro") -> Path:
    """``depth-pro-ros checkpoint --random tiny --model-type MODEL_TYPE -o PATH``, run in
    this process; its weights are those of ``model_factories``' tiny models."""
    import contextlib
    import io

    from depth_pro_ros.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        code = main(["checkpoint", "--random", "tiny", "--model-type", model_type,
                     "-o", str(path)])
    assert code == 0 and path.is_file(), f"checkpoint --random tiny: exit status {code}"
    return path


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """The project's cache (accuracy gate references) in this run's temporary folder,
    for this process and every node or CLI process it starts: nothing is written to, or
    read from, the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DEPTH_PRO_ROS_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Path of the tiny Depth Pro (``model_factories.tiny_model``) in the project's format."""
    return write_stand_in(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="session")
def da_checkpoints(tmp_path_factory):
    """Tiny Depth Anything V2 metric (indoor, 20 m) and relative and Prompt Depth Anything
    models (``model_factories.tiny_depth_anything``) in the project's format: name -> path."""
    root = tmp_path_factory.mktemp("da_ckpt")
    types = {"metric": "depth_anything_v2_metric_indoor", "relative": "depth_anything_v2",
             "prompt": "prompt_depth_anything"}
    return {name: write_stand_in(root / f"{name}.pt", t) for name, t in types.items()}


@pytest.fixture(scope="session")
def onnx_checkpoint(tmp_path_factory, tiny_checkpoint, da_checkpoints):
    """``onnx_checkpoint(name)``: the tiny checkpoint ``name`` (``depth_pro`` or a key of
    ``da_checkpoints``) exported by ``depth-pro-ros export`` in this process, only when
    asked for and once per run: an export takes 10-30 s, so under pytest-xdist the
    workers share the files (in the run's common temporary folder, under a file lock;
    the stand-ins are the same weights in every worker). ``NAME.pt`` beside the file is
    the copy of the source it was exported from. ``onnx_checkpoint.traced`` keeps the
    traced graph (``onnx_export.trace_onnx``'s result) of each export this process made,
    for :func:`onnx_traced`."""
    import contextlib
    import io
    import shutil

    from filelock import FileLock  # a torch dependency

    from depth_pro_ros.cli import main
    from depth_pro_ros.engine.backends import onnx_export

    sources = {"depth_pro": tiny_checkpoint, **da_checkpoints}
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    (root / "onnx").mkdir(exist_ok=True)
    traced: dict[str, object] = {}
    trace = onnx_export.trace_onnx

    def keep_trace(checkpoint, *args, **kwargs):
        """The exporter's own trace, its result kept (the export runs unchanged)."""
        traced[Path(checkpoint).stem] = result = trace(checkpoint, *args, **kwargs)
        return result

    def export(name: str) -> Path:
        path = root / "onnx" / f"{name}.onnx"
        with FileLock(str(path) + ".lock"):
            if not path.is_file():  # exported from a copy beside it, kept as its source
                source = shutil.copy(sources[name], path.with_suffix(".pt"))
                with contextlib.redirect_stdout(io.StringIO()), pytest.MonkeyPatch.context(
                        ) as patch:
                    patch.setattr(onnx_export, "trace_onnx", keep_trace)
                    code = main(["export", "--checkpoint", str(source), "-o", str(path)])
                assert code == 0 and path.is_file(), f"export {name}: exit status {code}"
        return path

    export.traced = traced
    return export


@pytest.fixture(scope="session")
def onnx_traced(onnx_checkpoint):
    """``onnx_traced(name)``: the traced graph of ``onnx_checkpoint(name)``, ready for
    ``onnx_export.write_onnx``: the one its export made when this process made it (a
    trace is most of an export's time), else traced again from the file's source."""
    from depth_pro_ros.engine.backends import onnx_export

    def traced(name: str):
        path = onnx_checkpoint(name)
        if name not in onnx_checkpoint.traced:
            onnx_checkpoint.traced[name] = onnx_export.trace_onnx(path.with_suffix(".pt"))
        return onnx_checkpoint.traced[name]

    return traced
