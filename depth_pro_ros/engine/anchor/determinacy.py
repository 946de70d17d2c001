"""Whether an anchor determines a ``scale_shift`` fit, decided from the data.

A scale needs one depth; a scale and a shift need the anchor to span depths over which
the network's depth varies too, by more than the noise. A wall at 5 m seen by a LiDAR
fixes one depth: any line through (network 1/depth, 5 m) fits it, and the fit picks the
one that flattens the image to 5 m (the network's structure discarded). Four checks, on
the points the robust fit kept (non-zero Tukey weight):

- at least ``MIN_DISTINCT`` distinct anchor depths (two parameters plus one to check);
- the anchor's inverse depth spans at least ``MIN_ANCHOR_SPAN`` of its median (10th to
  90th percentile): a nearly constant anchor is refused;
- the network's inverse depth over those pixels has a weighted std of at least
  ``MIN_NETWORK_SPREAD`` of its root mean square (the 2x2 normal equations are
  well-conditioned);
- the fitted line explains the anchor: the weighted std of the fitted inverse depth
  over its mean is at least ``MIN_SIGNAL_TO_NOISE`` times the robust relative residual
  (a line fitted to noise explains about one noise level or less). This is the check
  that scales with the data: an exact anchor over a narrow span determines the line,
  the same span with 1 % sensor noise (a single cluster, one wall) does not.

Too few points are refused before (``min_points``). Pure torch, no host sync.
"""

from __future__ import annotations

import math

import torch

__all__ = ["MIN_ANCHOR_SPAN", "MIN_DISTINCT", "MIN_NETWORK_SPREAD", "MIN_SIGNAL_TO_NOISE",
           "UNDETERMINED", "determinacy", "undetermined"]

MIN_DISTINCT = 3
#: 1 % is e.g. an anchor over 4.98-5.03 m: below, the anchor is one depth whatever its
#: noise (the signal-to-noise check decides above it).
MIN_ANCHOR_SPAN = 0.01
MIN_NETWORK_SPREAD = 0.01
MIN_SIGNAL_TO_NOISE = 2.0
#: How every reason of :func:`undetermined` starts.
UNDETERMINED = "scale_shift not determined by the anchor"


def determinacy(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, k: torch.Tensor,
                t: torch.Tensor, sigma: torch.Tensor) -> list[torch.Tensor]:
    """Network inverse depth ``x``, anchor inverse depth ``y``, robust weights ``w``,
    the line ``y = k x + t`` and the relative noise ``sigma`` -> device scalars
    ``[distinct, span, spread, signal_to_noise]`` for :func:`undetermined`."""
    used = w > 0
    ordered = torch.where(used, y, torch.full_like(y, math.inf)).sort().values
    distinct = ((ordered[1:] > ordered[:-1]) & torch.isfinite(ordered[1:])).sum() + \
        torch.isfinite(ordered[:1]).sum()
    inside = torch.where(used, y, torch.full_like(y, math.nan))
    q = torch.nanquantile(inside, torch.tensor([0.1, 0.5, 0.9], dtype=y.dtype,
                                               device=y.device))
    sw = w.sum()
    mean_x = (w * x).sum() / sw
    std_x = ((w * (x - mean_x) ** 2).sum() / sw).sqrt()
    spread = std_x / ((w * x * x).sum() / sw).sqrt()
    signal = k.abs() * std_x / (k * mean_x + t).abs()
    return [distinct.double(), (q[2] - q[0]) / q[1], spread, signal / sigma]


def undetermined(distinct: float, span: float, spread: float, snr: float) -> str | None:
    """Why the anchor does not determine scale and shift (one line), or None when it
    does (the host values of :func:`determinacy`)."""
    if distinct < MIN_DISTINCT:
        return (f"{UNDETERMINED}: {int(distinct)} distinct anchor depth(s) < "
                f"{MIN_DISTINCT}")
    if not span >= MIN_ANCHOR_SPAN:
        return (f"{UNDETERMINED}: its inverse depth spans {100 * span:.2f} % (10th-90th "
                f"percentile over the median) < {100 * MIN_ANCHOR_SPAN:g} %: a nearly "
                "constant anchor fixes one depth, not a scale and a shift")
    if not spread >= MIN_NETWORK_SPREAD:
        return (f"{UNDETERMINED}: the network's inverse depth over the anchor pixels "
                f"varies by {100 * spread:.2f} % < {100 * MIN_NETWORK_SPREAD:.0f} % "
                "(ill-conditioned)")
    if not snr >= MIN_SIGNAL_TO_NOISE:
        return (f"{UNDETERMINED}: the fitted depth varies {snr:.2f} times its noise over "
                f"the anchor < {MIN_SIGNAL_TO_NOISE:g} (a line fitted to noise)")
    return None
