"""depth_pro_ros: metric monocular depth for ROS 2 with Apple's Depth Pro network.

Sub-packages, imports pointing downwards only:

* ``model``  -- the network in pure torch, its configurations and checkpoint loading;
* ``engine`` -- the streaming inference pipeline, focal tracking, depth to points;
* ``io``     -- numpy/OpenCV conversions (images, messages, files), no torch;
* ``ros``    -- the ROS 2 node, the only place that imports rclpy;
* ``cli``    -- the ``depth-pro-ros`` command.
"""

__version__ = "0.1.0"
