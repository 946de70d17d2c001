"""Pure numpy/OpenCV input and output: image files, depth files, colorized previews.

Later this package also holds the conversions between arrays and sensor_msgs-shaped
messages. Nothing here imports torch or rclpy.
"""
