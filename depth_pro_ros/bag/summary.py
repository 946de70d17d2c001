"""What a bag run did: counters per camera and the summary printed at the end."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BagSummary", "CameraSummary"]


@dataclass
class CameraSummary:
    image_topic: str
    namespace: str
    info_topic: str | None
    frames_in: int = 0
    frames_out: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> frames
    decoder_warnings: int = 0  # frames decoded despite the codec's complaints
    focal: Counter = field(default_factory=Counter)  # camera_info / fov_head / fixed -> frames
    # used: distinct CameraInfo messages whose intrinsics went into a written frame (one
    # logged before --start can be); unusable / undecodable: those logged in the window.
    camera_info: dict[str, int] = field(default_factory=dict)
    last_width: int = 0
    focal_state: dict[str, Any] | None = None  # CameraStream.focal_state at the end
    anchor_topic: str | None = None
    # anchored / unanchored frames, fits_ok / fits_rejected, problems, unreadable
    anchor: Counter = field(default_factory=Counter)
    anchor_scales: list[float] = field(default_factory=list)  # applied, per anchored frame
    anchor_residuals: list[float] = field(default_factory=list)  # of the accepted fits
    rig_missing: int = 0  # --multiview rig: groups that ran without this camera

    def anchor_stats(self) -> dict[str, Any] | None:
        """The anchoring of this camera in numbers (None without an anchor topic)."""
        if self.anchor_topic is None:
            return None
        scales, residuals = self.anchor_scales, self.anchor_residuals
        return {"topic": self.anchor_topic, **{k: self.anchor[k] for k in (
                    "anchored", "unanchored", "fits_ok", "fits_rejected", "problems",
                    "unreadable")},
                "scale_median": statistics.median(scales) if scales else None,
                "scale_min": min(scales) if scales else None,
                "scale_max": max(scales) if scales else None,
                "residual_median": statistics.median(residuals) if residuals else None}


@dataclass
class BagSummary:
    input: Path
    output: Path
    storage: str
    cameras: list[CameraSummary]
    copied: int = 0  # messages copied from the input
    load_seconds: float = 0.0  # loading the checkpoint
    process_seconds: float = 0.0  # the pass over the bag
    host_cpu_seconds: float = 0.0  # CPU time of the reading/writing thread in that pass
    wall_seconds: float = 0.0  # everything
    recovery: str | None = None  # how a truncated / unindexed input was recovered
    damaged: list[str] = field(default_factory=list)  # damaged chunks skipped, one line each
    batch_sizes: dict[int, int] = field(default_factory=dict)  # frames per batch -> batches
    model: str = ""  # the network that ran (ModelInfo.description)
    runtime: str = ""  # where and how it ran: device, precision, backend
    rig_groups: int | None = None  # --multiview rig: joint forwards (None: not in rig mode)

    @property
    def frames_in(self) -> int:
        return sum(c.frames_in for c in self.cameras)

    @property
    def frames_out(self) -> int:
        return sum(c.frames_out for c in self.cameras)

    @property
    def skipped(self) -> Counter:
        return sum((c.skipped for c in self.cameras), Counter())

    @property
    def focal(self) -> Counter:
        return sum((c.focal for c in self.cameras), Counter())

    @property
    def fps(self) -> float:
        """Frames written per second of the pass over the bag (model loading excluded)."""
        return self.frames_out / self.process_seconds if self.process_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "input": str(self.input), "output": str(self.output), "format": self.storage,
            "model": self.model, "runtime": self.runtime,
            "frames_in": self.frames_in, "frames_out": self.frames_out,
            "skipped": dict(self.skipped), "focal_sources": dict(self.focal),
            "copied_messages": self.copied, "load_seconds": self.load_seconds,
            "process_seconds": self.process_seconds, "wall_seconds": self.wall_seconds,
            "host_cpu_seconds": self.host_cpu_seconds,
            "recovery": self.recovery, "damaged": list(self.damaged),
            "frames_per_second": self.fps, "batch_sizes": dict(self.batch_sizes),
            "cameras": [
                {"image_topic": c.image_topic, "camera_info_topic": c.info_topic,
                 "frames_in": c.frames_in, "frames_out": c.frames_out,
                 "skipped": dict(c.skipped), "decoder_warnings": c.decoder_warnings,
                 "focal_sources": dict(c.focal),
                 "camera_info": dict(c.camera_info), "focal_state": c.focal_state,
                 "anchor": c.anchor_stats(),
                 **({} if self.rig_groups is None else {"rig_missing": c.rig_missing})}
                for c in self.cameras
            ],
            **({} if self.rig_groups is None else {"rig_groups": self.rig_groups}),
        }

    def format(self) -> str:
        def counts(counter: Counter) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(counter.items())) or "none"

        lines = [f"{self.input} -> {self.output} ({self.storage})"]
        if self.model:
            lines.append(f"  model:        {self.model}"
                         + (f" ({self.runtime})" if self.runtime else ""))
        if self.recovery:
            lines.append(f"  recovered:    {self.recovery}")
        if self.damaged:
            lines.append(f"  damaged:      {len(self.damaged)} unreadable part(s) of the input "
                         "skipped")
            lines += [f"    {line}" for line in self.damaged]
        per_topic = ", ".join(f"{c.image_topic} {c.frames_in}" for c in self.cameras)
        lines.append(f"  frames in:    {self.frames_in} ({per_topic})")
        lines.append(f"  frames out:   {self.frames_out}")
        skipped = self.skipped
        lines.append(f"  skipped:      {sum(skipped.values())}"
                     + (f" ({counts(skipped)})" if skipped else ""))
        warned = sum(c.decoder_warnings for c in self.cameras)
        if warned:
            lines.append(f"  decoder warnings: {warned} frame(s) decoded despite damage")
        lines.append(f"  focal source: {counts(self.focal)}")
        for c in self.cameras:
            info = c.camera_info
            if c.info_topic is None:
                text = "no camera_info topic"
            else:
                text = (f"{c.info_topic}: {info.get('used', 0)} CameraInfo used by the "
                        "written frames")
                bad = {k: v for k, v in info.items() if k != "used" and v}
                if bad:
                    text += " (" + ", ".join(f"{v} {k}" for k, v in sorted(bad.items())) + ")"
            state = c.focal_state or {}
            if state.get("ema_px") is not None:
                text += (f"; FoV estimate EMA {state['ema_px']:.1f} px at width "
                         f"{c.last_width} ({state['estimates']} estimates)")
            lines.append(f"  {c.namespace or '/'}: {text}")
            anchor = c.anchor_stats()
            if anchor is not None:
                text = (f"{anchor['topic']}: {anchor['anchored']} frame(s) anchored, "
                        f"{anchor['unanchored']} not; fits {anchor['fits_ok']} accepted, "
                        f"{anchor['fits_rejected']} rejected")
                if anchor["scale_median"] is not None:
                    text += (f"; scale median {anchor['scale_median']:.4f} (range "
                             f"{anchor['scale_min']:.4f}-{anchor['scale_max']:.4f})")
                if anchor["residual_median"] is not None:
                    text += f", residual median {anchor['residual_median']:.4f}"
                if anchor["unreadable"]:
                    text += f"; {anchor['unreadable']} unreadable anchor message(s)"
                lines.append(f"  {c.namespace or '/'} anchors: {text}")
        if self.rig_groups is not None:
            missing = [f"{c.image_topic} missing from {c.rig_missing}" for c in self.cameras
                       if c.rig_missing]
            lines.append(f"  rig:          {self.rig_groups} group(s) of the cameras' frames, "
                         "one joint forward each"
                         + (f" ({', '.join(missing)})" if missing else ", none incomplete"))
        if self.batch_sizes:
            lines.append("  batches:      " + ", ".join(
                f"{count} of {size}" for size, count in sorted(self.batch_sizes.items())))
        lines.append(f"  copied:       {self.copied} message(s)")
        lines.append(f"  wall time:    {self.wall_seconds:.1f} s (model load "
                     f"{self.load_seconds:.1f} s, bag pass {self.process_seconds:.1f} s)")
        per_frame = 1e3 * self.host_cpu_seconds / max(self.frames_in, 1)
        lines.append(f"  throughput:   {self.fps:.2f} frames/s (reading, decoding and writing: "
                     f"{per_frame:.1f} ms CPU per frame)")
        return "\n".join(lines)
