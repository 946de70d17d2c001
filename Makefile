# Single entry point: `make demo` runs the bag tool on the sample, `make test` lint + tests.

PYTHON      ?= python3
VENV        := .venv
VPY         := $(VENV)/bin/python
PIP         := $(VPY) -m pip --quiet --disable-pip-version-check
STAMP       := $(VENV)/.installed
ROS_WHEELS  := 'ros-rclpy[fastrtps]' ros-sensor-msgs ros-std-msgs ros-diagnostic-msgs
DEMO_OUT    := demo_output

.PHONY: venv test demo clean

venv: $(STAMP)

$(STAMP): setup.py Makefile
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0 $(ROS_WHEELS) rosbags mcap opencv-python-headless
	$(PIP) install -e '.[test]'
	touch $@

test: venv
	$(VENV)/bin/ruff check .
	$(VPY) -m pytest -q

# Sample bag -> depth bag + contact sheet + .ply. Weights: $DEPTH_PRO_DEMO_CHECKPOINT (smoke
# test), $DEPTH_PRO_CHECKPOINT, else ~/.cache/depth_pro_ros/depth_pro.pt (downloaded if absent).
demo: venv
	$(VENV)/bin/depth-pro-ros demo -o $(DEMO_OUT)

clean:
	rm -rf $(DEMO_OUT) build install log .pytest_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
