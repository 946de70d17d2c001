# Single entry point: `make demo` runs the bag tool on the sample, `make test` lint + tests.

PYTHON      ?= python3
VENV        := .venv
VPY         := $(VENV)/bin/python
PIP         := $(VPY) -m pip --quiet --disable-pip-version-check
DEMO_STAMP  := $(VENV)/.installed-demo
TEST_STAMP  := $(VENV)/.installed-test
# The node's runtime from PyPI (on a robot these come with the ROS distribution).
ROS_WHEELS  := 'ros-rclpy[fastrtps]' ros-sensor-msgs ros-std-msgs ros-diagnostic-msgs
# Test tooling only: colcon and the dependencies of the upstream launch sources in
# ../shared/ros2-launch, with which test/ros/test_launch_real.py runs `ros2 launch`.
LAUNCH_TOOLS := colcon-core colcon-ros colcon-python-setup-py colcon-package-selection \
                colcon-library-path ros-ament-package ros-ament-index-python \
                osrf-pycommon lark psutil
DEMO_OUT    := demo_output

.PHONY: venv test demo clean

# What the demo and the depth-pro-ros command need: CPU torch and the package.
venv: $(DEMO_STAMP)

$(DEMO_STAMP): setup.py Makefile
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	$(PIP) install -e .
	touch $@

# Everything the tests need on top: ROS 2 wheels, the reference models, Ray, lint, colcon.
$(TEST_STAMP): $(DEMO_STAMP)
	$(PIP) install $(ROS_WHEELS) $(LAUNCH_TOOLS)
	$(PIP) install -e '.[test]'
	touch $@

test: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	$(VPY) -m pytest -q -n logical --dist loadfile --durations=30

# Sample bag -> depth bag + contact sheet + .ply. Weights: $DEPTH_PRO_DEMO_CHECKPOINT (smoke
# test), $DEPTH_PRO_CHECKPOINT, else ~/.cache/depth_pro_ros/depth_pro.pt (downloaded if absent).
demo: venv
	$(VENV)/bin/depth-pro-ros demo -o $(DEMO_OUT)

clean:
	rm -rf $(DEMO_OUT) depth_output build install log .pytest_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
