# Single entry point: `make demo` runs the sample, `make test` runs lint + tests.

PYTHON      ?= python3
VENV        := .venv
VPY         := $(VENV)/bin/python
PIP         := $(VPY) -m pip --quiet --disable-pip-version-check
STAMP       := $(VENV)/.installed
ROS_WHEELS  := 'ros-rclpy[fastrtps]' ros-sensor-msgs ros-std-msgs ros-diagnostic-msgs
DEMO_CKPT   := $(or $(DEPTH_PRO_DEMO_CHECKPOINT),$(DEPTH_PRO_CHECKPOINT),$(HOME)/.cache/depth_pro_ros/depth_pro.pt)
DEMO_IMAGE  := data/sample.jpg
DEMO_OUT    := demo_output
WEIGHTS_URL := https://ml-site.cdn-apple.com/models/depth-pro/depth_pro.pt

.PHONY: venv test demo clean

venv: $(STAMP)

$(STAMP): setup.py Makefile
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0 $(ROS_WHEELS) rosbags opencv-python-headless
	$(PIP) install -e '.[test]'
	touch $@

test: venv
	$(VENV)/bin/ruff check .
	$(VPY) -m pytest -q

demo: venv
	@if [ ! -e "$(DEMO_CKPT)" ]; then \
	  echo "make demo: no Depth Pro checkpoint at $(DEMO_CKPT)" >&2; \
	  echo "  Download Apple's weights:  $(WEIGHTS_URL)" >&2; \
	  echo "  and save them as ~/.cache/depth_pro_ros/depth_pro.pt," >&2; \
	  echo "  or point DEPTH_PRO_CHECKPOINT at depth_pro.pt or at a Hugging Face" >&2; \
	  echo "  apple/DepthPro-hf folder (model.safetensors + config.json)." >&2; \
	  exit 1; \
	fi
	$(VENV)/bin/depth-pro-ros image $(DEMO_IMAGE) --checkpoint "$(DEMO_CKPT)" -o $(DEMO_OUT)
	@echo "demo outputs written to $(DEMO_OUT)/"

clean:
	rm -rf $(DEMO_OUT) build install log .pytest_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
