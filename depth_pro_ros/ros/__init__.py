"""ROS 2 glue: the node, its parameters, QoS and launch helpers.

This is the only package of depth_pro_ros that imports rclpy; everything below it
(``model``, ``engine``, ``io``) runs and is tested without a ROS installation.
"""
