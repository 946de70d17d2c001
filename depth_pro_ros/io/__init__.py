"""Pure numpy/OpenCV input and output; nothing here imports torch or ROS.

* ``image_decode``   -- Image / CompressedImage messages -> pixel arrays;
* ``image_header`` (with ``_boxes``, ``_text``) -- sizes declared by compressed headers,
  read before decoding;
* ``messages``       -- CameraInfo, depth and colour Image fields <-> arrays, stamps, ``fill``;
* ``pointcloud_msg`` -- PointCloud2 <-> structured arrays (the PointField datatype table);
* ``image_files``, ``colorize`` -- photos and depth files on disk, colorized previews.
"""
