"""depth_pro_ros: metric monocular depth for ROS 2 with Apple's Depth Pro network.

Sub-packages, imports pointing downwards only:

* ``model``  -- the network in pure torch, its configurations and checkpoint loading;
* ``engine`` -- the streaming inference pipeline, focal tracking, depth to points;
* ``io``     -- numpy/OpenCV conversions (images, messages, files), no torch;
* ``stream`` -- shared by node and bag tool: message -> frame -> output messages;
* ``ros``    -- the ROS 2 node and its parameters, the only place that imports rclpy;
* ``bag``    -- offline processing of recorded bags (rosbags), the demo and its sample;
* ``cli``    -- the ``depth-pro-ros`` command.

docs/conventions.md describes the layering; docs/network.md and docs/checkpoints.md the
network and the weights it loads.
"""

__version__ = "0.1.0"
