"""Pure numpy/OpenCV input and output; nothing here imports torch or ROS.

* ``image_decode``   -- Image / CompressedImage messages -> pixel arrays;
* ``messages``       -- CameraInfo, depth and colour Image fields <-> arrays, stamps, ``fill``;
* ``pointcloud_msg`` -- PointCloud2 <-> structured arrays (the PointField datatype table);
* ``image_files``, ``colorize`` -- photos and depth files on disk, colorized previews.
"""
