# Single entry point: `make demo` runs the bag tool on the sample, `make test` lint + tests.

PYTHON      ?= python3
VENV        := .venv
VPY         := $(VENV)/bin/python
PIP         := $(VPY) -m pip --quiet --disable-pip-version-check
UV          := $(VENV)/bin/uv
# uv resolves and installs everything in one parallel step (fresh, on 2 cores: about 40 s
# instead of 85 s or more with pip). It does not read pip's configuration, so this
# machine's pip sources go with it (find-links, where a CPU build of torch may lie; indexes;
# constraints; the certificate bundle), and unsafe-best-match picks the newest release over
# all indexes, as pip does. No .pyc files are written at install (most installed modules
# are never imported); the tests write them as they import (see `test`).
pip_conf     = $(shell $(PYTHON) -m pip config list 2>/dev/null | sed -n "s/^[^.]*\.$(1)='\(.*\)'$$/\1/p")
UV_SOURCES   = $(addprefix --find-links ,$(sort $(call pip_conf,find-links))) \
               $(addprefix --index-url ,$(firstword $(call pip_conf,index-url))) \
               $(addprefix --extra-index-url ,$(sort $(call pip_conf,extra-index-url))) \
               $(addprefix --constraint ,$(sort $(call pip_conf,constraint)))
INSTALL      = $(addprefix SSL_CERT_FILE=,$(firstword $(call pip_conf,cert))) \
               $(UV) pip install --quiet --python $(VPY) --index-strategy unsafe-best-match \
               $(UV_SOURCES)
DEMO_STAMP  := $(VENV)/.installed-demo
TEST_STAMP  := $(VENV)/.installed-test
# The node's runtime from PyPI (on a robot these come with the ROS distribution).
ROS_WHEELS  := 'ros-rclpy[fastrtps]' ros-sensor-msgs ros-std-msgs ros-diagnostic-msgs \
               ros-geometry-msgs
# Test tooling only: colcon and the dependencies of the upstream launch sources in
# ../shared/ros2-launch, with which test/ros/test_launch_real.py runs `ros2 launch`.
LAUNCH_TOOLS := colcon-core colcon-ros colcon-python-setup-py colcon-package-selection \
                colcon-library-path ros-ament-package ros-ament-index-python \
                osrf-pycommon lark psutil
DEMO_OUT    := demo_output

.PHONY: venv test demo clean

$(UV):
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install uv==0.13.9

# What the demo and the depth-pro-ros command need: CPU torch and the package.
venv: $(DEMO_STAMP)

$(DEMO_STAMP): setup.py Makefile | $(UV)
	$(INSTALL) torch==2.13.0 -e .
	touch $@

# Everything the tests need on top: ROS 2 wheels, the reference models, Ray, lint, colcon.
# One resolver call for all of it (the demo's set included, so its stamp holds too).
$(TEST_STAMP): setup.py Makefile | $(UV)
	$(INSTALL) torch==2.13.0 -e '.[test]' $(ROS_WHEELS) $(LAUNCH_TOOLS)
	$(INSTALL) --no-deps depth-anything-3==0.1.1
	touch $@ $(DEMO_STAMP)

# The first process to import a module writes its .pyc, even where the shell sets
# PYTHONDONTWRITEBYTECODE: every node, CLI and Ray process the tests start would otherwise
# compile what it imports again (about 2.5 s of CPU each).
test: $(TEST_STAMP)
	$(VENV)/bin/ruff check .
	env -u PYTHONDONTWRITEBYTECODE $(VPY) -m pytest -q -n logical --dist loadfile --durations=30

# Sample bag -> depth bag + contact sheet + .ply. Weights: $DEPTH_PRO_DEMO_CHECKPOINT (smoke
# test), $DEPTH_PRO_CHECKPOINT, else ~/.cache/depth_pro_ros/depth_pro.pt (downloaded if absent).
demo: venv
	$(VENV)/bin/depth-pro-ros demo -o $(DEMO_OUT)

clean:
	rm -rf $(DEMO_OUT) depth_output build install log .pytest_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
