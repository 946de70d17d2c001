"""Start depth_pro_node for one camera, or for several with one loaded model.

ros2 launch depth_pro_ros depth.launch.py checkpoint:=/path/depth_pro.pt \
    image_topic:=/camera/image_raw
ros2 launch depth_pro_ros depth.launch.py checkpoint:=/path/depth_pro.pt \
    namespace:=/robot cameras:="[front, left, right]"
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = (
    ("namespace", "", "Namespace of the node and its output topics (e.g. the camera's)"),
    ("image_topic", "image", "Input image topic; with use_compressed, the base topic whose "
     "/compressed is read"),
    ("camera_info_topic", "camera_info", "Input sensor_msgs/CameraInfo topic"),
    ("anchor_source", "none", "Metric anchor: none, depth (a registered depth image) or "
     "points (a point cloud); see the README, Metric anchoring"),
    ("anchor_depth_topic", "anchor/depth", "Anchor depth image topic (sensor_msgs/Image "
     "32FC1 m or 16UC1 mm), with anchor_source depth"),
    ("anchor_points_topic", "anchor/points", "Anchor point cloud topic (PointCloud2 x, y, "
     "z), with anchor_source points"),
    ("cameras", "[]", "Cameras served by one node and model, e.g. \"[front, left]\": camera "
     "NAME reads <namespace>/NAME/image and NAME/camera_info and publishes NAME/depth, "
     "NAME/depth/camera_info, NAME/points and NAME/depth/colorized (image_topic and "
     "camera_info_topic then do not apply); empty: one camera"),
    ("checkpoint", os.path.join(os.path.expanduser("~"), ".cache", "depth_pro_ros",
                                "depth_pro.pt"),
     "Network weights: Depth Pro (depth_pro.pt or an apple/DepthPro-hf folder), Depth "
     "Anything V2 or Prompt Depth Anything (original or Hugging Face files)"),
    ("model_type", "auto", "Model family and head, read from the checkpoint with auto; or "
     "depth_pro, depth_anything_v2, depth_anything_v2_metric_indoor, "
     "depth_anything_v2_metric_outdoor, prompt_depth_anything"),
    ("device", "", "Torch device: cuda, cuda:N or cpu; empty = cuda when available"),
    ("precision", "auto", "Network precision: auto, fp32, fp16 or bf16"),
    ("params_file", PathJoinSubstitution([FindPackageShare("depth_pro_ros"), "config",
                                          "depth_pro.yaml"]),
     "YAML file with the node's parameters (default: the package's config/depth_pro.yaml)"),
    ("use_compressed", "false", "Subscribe to <image_topic>/compressed (jpeg/png) instead "
     "of the raw image"),
)


def generate_launch_description() -> LaunchDescription:
    image = LaunchConfiguration("image_topic")
    transport = PythonExpression(
        ["'compressed' if '", LaunchConfiguration("use_compressed"),
         "'.lower() in ('true', '1') else 'raw'"])
    node = Node(
        package="depth_pro_ros",
        executable="depth_pro_node",
        name="depth_pro_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "checkpoint": LaunchConfiguration("checkpoint"),
                "model_type": LaunchConfiguration("model_type"),
                "device": LaunchConfiguration("device"),
                "precision": LaunchConfiguration("precision"),
                "input_transport": transport,
                "cameras": LaunchConfiguration("cameras"),
                "anchor_source": LaunchConfiguration("anchor_source"),
            },
        ],
        remappings=[
            ("image", image),
            ("image/compressed", [image, "/compressed"]),
            ("camera_info", LaunchConfiguration("camera_info_topic")),
            ("anchor/depth", LaunchConfiguration("anchor_depth_topic")),
            ("anchor/points", LaunchConfiguration("anchor_points_topic")),
        ],
    )
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS]
        + [node]
    )
