"""Build script for depth_pro_ros (colcon ament_python and plain pip both use it)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "depth_pro_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Metric monocular depth for ROS 2 with Apple's Depth Pro network",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(exclude=["test", "test.*", "tests", "tests.*"]),
    # The demo's sample picture, read through importlib.resources in any installation.
    package_data={f"{PACKAGE}.bag": ["data/*.jpg"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", sorted(glob("launch/*.py"))),
        # Parameters, and ready views for RViz2 (.rviz) and Foxglove (.foxglove.json).
        (f"share/{PACKAGE}/config", sorted(glob("config/*.yaml") + glob("config/*.rviz")
                                           + glob("config/*.json"))),
    ],
    install_requires=[
        "numpy",
        "opencv-python-headless",
        "torch",
        "safetensors",
        "tqdm",
        "rosbags",
        "mcap",
        "pyyaml",  # rig mode's rig_extrinsics file
    ],
    extras_require={
        # `depth-pro-ros bags --ray`: a pool of workers on a Ray cluster.
        "cluster": ["ray>=2.9"],
        # `depth-pro-ros export` and `backend: onnxruntime` (onnxscript: torch's ONNX
        # exporter needs it).
        "onnx": ["onnx", "onnxruntime", "onnxscript"],
        # `backend: tensorrt` and `export --format tensorrt` (NVIDIA GPUs): TensorRT 10,
        # whose BuilderFlag.FP16 builds fp16 engines from the fp32 graph (TensorRT 11
        # removed it); the ONNX packages read and export the graph it is built from.
        "tensorrt": ["onnx", "onnxruntime", "onnxscript", "tensorrt>=10.0,<11"],
        # ray: CI runs the Ray tests of `bags` (test/bag/test_bag_fleet.py);
        # pytest-xdist: the suite runs on every core (`make test`); onnx*: the export
        # and ONNX Runtime tests; addict, omegaconf, einops: what the Depth Anything 3
        # reference's model code imports (the Makefile adds the package with --no-deps:
        # its declared dependencies are heavy and unused there).
        "test": ["pytest", "pytest-xdist", "transformers", "ruff", "ray>=2.9", "onnx",
                 "onnxruntime", "onnxscript", "addict", "omegaconf", "einops"],
    },
    zip_safe=True,
    entry_points={
        "console_scripts": [
            f"depth_pro_node = {PACKAGE}.ros.node:main",
            f"depth-pro-ros = {PACKAGE}.cli:main",
        ],
    },
)
