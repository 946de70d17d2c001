"""Offline bag processing: every image of a ROS 1 / ROS 2 bag -> metric depth in a new bag."""

from depth_pro_ros.bag.errors import (
    BagDataError,
    BagError,
    BagInputError,
    BagOutputError,
    BagSetupError,
)
from depth_pro_ros.bag.process import BagOptions, process_bag
from depth_pro_ros.bag.summary import BagSummary

__all__ = [
    "BagDataError",
    "BagError",
    "BagInputError",
    "BagOptions",
    "BagOutputError",
    "BagSetupError",
    "BagSummary",
    "process_bag",
]
