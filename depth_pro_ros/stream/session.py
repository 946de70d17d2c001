"""One camera of the node or the bag tool: messages in, engine frames out, outputs back.

:class:`CameraSession` holds a camera's per-frame state -- its :class:`CameraStream`
(decoding, CameraInfo pairing, the focal EMA) and, when anchoring, its
:class:`AnchorStream` (anchor pairing, the anchor EMA) -- and makes the choices the node
and the bag tool share: a Prompt Depth Anything frame takes its prompt from the paired
anchor, any other anchored frame gets its anchor values (the paired anchor, the fit
settings, the camera's tracker: the engine fits and applies them), and an unanchored relative
depth is refused unless ``depth/relative`` is allowed. The front ends attach messages
(:meth:`add_image`, :meth:`add_camera_info`, :meth:`add_anchor`), submit the frames
they get back, and turn each result into messages with :meth:`outputs`. The frame's
context (``Frame.meta``, ``DepthResult.meta``) is a
:class:`~depth_pro_ros.stream.camera.FrameContext`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

from depth_pro_ros.engine import DepthResult, Frame
from depth_pro_ros.io.image_decode import DEFAULT_MAX_INPUT_PIXELS
from depth_pro_ros.stream.anchor import AnchorOptions, AnchorStream
from depth_pro_ros.stream.camera import CameraStream, FocalSettings, FrameContext
from depth_pro_ros.stream.errors import FrameSkipped
from depth_pro_ros.stream.model_use import NODE_NAMES
from depth_pro_ros.stream.outputs import OutputMessage, OutputOptions, build_outputs
from depth_pro_ros.stream.transport import Transport

__all__ = ["CameraSession"]


class CameraSession:
    """One camera's streams, trackers and per-frame choices (see the module docstring).

    ``name`` identifies the camera on its frames (``FrameContext.camera``, and the
    engine's ``Frame.source``); ``transport`` is how its images come; ``needs_prompt``:
    the model takes a prompt depth from the anchor input (then ``anchor`` must be
    enabled). ``history`` / ``hold_unpaired`` / ``max_input_pixels`` are the
    :class:`CameraStream`'s. ``names`` are the front end's names of its settings, for
    the texts of refused frames (see ``model_use.NODE_NAMES``).
    """

    def __init__(
        self,
        name: Hashable,
        transport: Transport | str,
        focal: FocalSettings,
        anchor: AnchorOptions | None = None,
        *,
        needs_prompt: bool = False,
        history: int | None = 64,
        hold_unpaired: bool = False,
        max_input_pixels: int | None = DEFAULT_MAX_INPUT_PIXELS,
        estimate_fov: bool = False,
        names: Mapping[str, str] = NODE_NAMES,
    ) -> None:
        self.name = name
        self.transport = Transport(transport)
        self.stream = CameraStream(focal, history=history, hold_unpaired=hold_unpaired,
                                   max_input_pixels=max_input_pixels, name=name)
        self.anchor = AnchorStream(anchor, max_pixels=max_input_pixels) \
            if anchor is not None and anchor.enabled else None
        self.needs_prompt = needs_prompt
        self.estimate_fov = estimate_fov
        self._names = names

    def configure(self, focal: FocalSettings, anchor: AnchorOptions | None,
                  max_input_pixels: int | None, estimate_fov: bool) -> None:
        """Apply changed settings from the next frame (new focal or fit settings restart
        their EMA); whether the camera anchors at all is fixed at start-up."""
        self.stream.configure(focal)
        self.stream.max_input_pixels = max_input_pixels
        if self.anchor is not None:
            self.anchor.max_pixels = max_input_pixels  # anchors are bounded like images
            if anchor is not None:
                self.anchor.configure(anchor)
        self.estimate_fov = estimate_fov

    # ---------------------------------------------------------------- input
    def add_image(self, msg: Any, received: float) -> list[Frame]:
        """The frame of an image message, ready to submit (none while it is held for its
        CameraInfo).

        Raises:
            FrameSkipped: the image cannot be processed (see ``CameraStream.prepare``),
                or a prompt model has no usable prompt for it (``no_prompt``).
        """
        frame = self.stream.prepare(msg, self.transport, received)
        return [] if frame is None else [self._complete(frame)]

    def add_camera_info(self, msg: Any, received: float) -> list[Frame]:
        """Record a CameraInfo; the held frame it completes, ready to submit.

        Raises:
            FrameSkipped: the held frame cannot be processed. Catch it before ValueError.
            ValueError: the CameraInfo is unusable; it is ignored.
        """
        return [self._complete(frame) for frame in self.stream.add_camera_info(msg, received)]

    def add_anchor(self, msg: Any, received: float) -> None:
        """Record an anchor message. Raises ``ValueError`` when it cannot be read (or the
        camera does not anchor)."""
        if self.anchor is None:
            raise ValueError("anchor ignored: this camera has no anchor input")
        self.anchor.add(msg, received)

    def _complete(self, frame: Frame) -> Frame:
        """Give a prepared frame its camera, FoV request and prompt or anchoring step."""
        ctx: FrameContext = frame.meta
        frame.source = self.name
        frame.estimate_fov = self.estimate_fov
        frame_id = str(getattr(ctx.header, "frame_id", ""))
        if self.needs_prompt:
            if self.anchor is None:  # check_model_use refuses this at start-up
                raise FrameSkipped("the model takes its prompt from an anchor input, and "
                                   "this camera has none", "no_prompt")
            try:
                frame.prompt = self.anchor.prompt_for(frame_id, ctx.stamp_ns, ctx.received,
                                                      frame.intrinsics, frame.image.shape[:2])
            except ValueError as exc:
                raise FrameSkipped(str(exc), "no_prompt") from None
        elif self.anchor is not None:
            frame.anchor = self.anchor.input_for(frame_id, ctx.stamp_ns, ctx.received)
        return frame

    # ---------------------------------------------------------------- output
    def outputs(self, result: DepthResult, options: OutputOptions) -> list[OutputMessage]:
        """The messages of a result (headers excluded: copy ``result.meta.header``).

        Raises:
            FrameSkipped: the frame failed (``inference``), or it is a relative model's
                unanchored depth and ``options.relative`` is off (``unanchored``).
        """
        ctx: FrameContext = result.meta
        if not result.ok:
            raise FrameSkipped(f"depth failed for the image stamped {ctx.stamp_ns * 1e-9:.3f}: "
                               f"{result.error}", "inference")
        if result.relative is not None and not options.relative:
            raise FrameSkipped(
                "no accepted anchor fit for this frame: a relative model's depth has no "
                f"metric scale without one ({self._names['allow_relative']} gives it on "
                f"{self._names['relative_topic']})", "unanchored")
        return build_outputs(result, options, ctx.camera_info)

    def pop_notes(self) -> list[str]:
        """Focal source and anchoring switches since the last call (log each once)."""
        notes = [f"focal source: {line}" for line in self.stream.pop_messages()]
        if self.anchor is not None:
            notes += [f"anchoring: {line}" for line in self.anchor.pop_messages()]
        return notes
