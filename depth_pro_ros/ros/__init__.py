"""ROS 2 glue: the node (``node``) and its parameter table (``parameters``).

This is the only package of depth_pro_ros that imports rclpy; everything below it
(``stream``, ``engine``, ``io``, ``model``) runs and is tested without a ROS installation.
The launch file is ``launch/depth.launch.py`` at the top of the repository.
"""
