"""Support shared by the tests and the benchmarks (``bench/``): one way to run
``depth_pro_node`` as a process and talk to it over DDS, and one generator of malformed
camera messages.

- :mod:`harness.node`: the node as a subprocess on a loopback DDS domain
  (:class:`~harness.node.NodeProcess`), its environment, memory and log.
- :mod:`harness.probe`: the rclpy node on the other side (:class:`~harness.probe.Probe`,
  :class:`~harness.probe.CameraProbe`) and :func:`~harness.probe.running_node`.
- :mod:`harness.ros_messages`: rclpy Image / CompressedImage / CameraInfo builders.
- :mod:`harness.malformed`, :mod:`harness.bombs`: malformed messages for fuzzing.
- :mod:`harness.engine`: one frame through a running engine's ``submit`` / ``get``.
- :mod:`harness.memory`: the peak traced allocation of a block (sizes refused before
  allocation).

It is imported as ``harness``: pytest puts ``test/`` on ``sys.path`` (``test/conftest.py``
is in it), and ``bench/_common.py`` puts it there for the benchmark scripts. Models come
from the product itself (``depth_pro_ros.model.stand_in.random_model``).
"""
