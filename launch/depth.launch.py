"""Start depth_pro_node for one camera, or for several with one loaded model.

ros2 launch depth_pro_ros depth.launch.py checkpoint:=/path/depth_pro.pt \
    image_topic:=/camera/image_raw
ros2 launch depth_pro_ros depth.launch.py checkpoint:=/path/depth_pro.pt \
    namespace:=/robot cameras:="[front, left, right]"
ros2 launch depth_pro_ros depth.launch.py params_file:=/path/my_depth.yaml

Which value a node parameter gets: an argument given (on the command line, or by a launch
file that includes this one) among checkpoint, model_type, device, precision, cameras,
anchor_source and use_compressed wins over the parameter file; one not given leaves the
file's value (params_file, by default the package's config/depth_pro.yaml). A checkpoint
left empty everywhere is the node's default: $DEPTH_PRO_CHECKPOINT, else
~/.cache/depth_pro_ros/depth_pro.pt.
"""

import os

import yaml
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

NODE_NAME = "depth_pro_node"
# Default of the arguments that set a node parameter: not given, the file's value stays.
NOT_GIVEN = ""

# (name, default, description), in the order `ros2 launch ... --show-args` lists them.
ARGUMENTS = (
    ("namespace", "", "Namespace of the node and its output topics (e.g. the camera's)"),
    ("image_topic", "image", "Input image topic; with compressed input, the base topic whose "
     "/compressed is read"),
    ("camera_info_topic", "camera_info", "Input sensor_msgs/CameraInfo topic"),
    ("anchor_source", NOT_GIVEN, "Metric anchor: none, depth (a registered depth image) or "
     "points (a point cloud); see docs/node.md, Metric anchoring. Not given: the params "
     "file's anchor_source (shipped: none)"),
    ("anchor_depth_topic", "anchor/depth", "Anchor depth image topic (sensor_msgs/Image "
     "32FC1 m or 16UC1 mm), with anchor_source depth"),
    ("anchor_points_topic", "anchor/points", "Anchor point cloud topic (PointCloud2 x, y, "
     "z), with anchor_source points"),
    ("cameras", NOT_GIVEN, "Cameras served by one node and model, e.g. \"[front, left]\": "
     "camera NAME reads <namespace>/NAME/image and NAME/camera_info and publishes "
     "NAME/depth, NAME/depth/camera_info, NAME/points and NAME/depth/colorized (image_topic "
     "and camera_info_topic then do not apply). Not given or []: the params file's cameras "
     "(shipped: [], one camera)"),
    ("checkpoint", NOT_GIVEN, "Network weights: Depth Pro (depth_pro.pt or an "
     "apple/DepthPro-hf folder), Depth Anything V2 or Prompt Depth Anything (original or "
     "Hugging Face files). Not given: the params file's checkpoint; empty there too: "
     "$DEPTH_PRO_CHECKPOINT, else ~/.cache/depth_pro_ros/depth_pro.pt (the node's default)"),
    ("model_type", NOT_GIVEN, "Model family and head: auto (read from the checkpoint), "
     "depth_pro, depth_anything_v2, depth_anything_v2_metric_indoor, "
     "depth_anything_v2_metric_outdoor, prompt_depth_anything, depth_anything_3, "
     "depth_anything_3_mono or depth_anything_3_metric. Not given: the params file's "
     "model_type (shipped: auto)"),
    ("device", NOT_GIVEN, "Torch device: cuda, cuda:N or cpu. Not given: the params file's "
     "device (shipped: empty = cuda when available)"),
    ("precision", NOT_GIVEN, "Network precision: auto, fp32, fp16 or bf16. Not given: the "
     "params file's precision (shipped: auto)"),
    ("params_file", PathJoinSubstitution([FindPackageShare("depth_pro_ros"), "config",
                                          "depth_pro.yaml"]),
     "YAML file with the node's parameters (default: the package's config/depth_pro.yaml); "
     "the arguments above that set a parameter win over it when given"),
    ("use_compressed", NOT_GIVEN, "true: subscribe to <image_topic>/compressed (jpeg/png) "
     "(input_transport compressed); false: to the raw image (input_transport raw). Not "
     "given: the params file's input_transport (shipped: raw)"),
)

# Arguments that set a node parameter (the one named here) when given, and only then.
PARAMETER_OF = {
    "checkpoint": "checkpoint",
    "model_type": "model_type",
    "device": "device",
    "precision": "precision",
    "cameras": "cameras",
    "anchor_source": "anchor_source",
    "use_compressed": "input_transport",
}
# The node's input topic -> the argument that remaps it.
REMAPPED_BY = {
    "image": "image_topic",
    "camera_info": "camera_info_topic",
    "anchor/depth": "anchor_depth_topic",
    "anchor/points": "anchor_points_topic",
}


def _cameras(text: str) -> list[str]:
    """"[front, left]" (YAML) or "front, left" -> ["front", "left"]."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"cameras: {text!r} is not a list such as \"[front, left]\": "
                         f"{exc}") from None
    names = value if isinstance(value, list) else str(value).split(",")
    return [str(name).strip() for name in names if str(name).strip()]


def _transport(text: str) -> str:
    word = text.lower()
    if word in ("true", "1", "yes", "on"):
        return "compressed"
    if word in ("false", "0", "no", "off"):
        return "raw"
    raise ValueError(f"use_compressed must be true or false, got {text!r}")


def _given_parameters(context) -> dict:
    """Node parameter -> value for each parameter argument given to the launch."""
    parameters = {}
    for argument, parameter in PARAMETER_OF.items():
        text = LaunchConfiguration(argument).perform(context).strip()
        if text == NOT_GIVEN:
            continue
        if argument == "cameras":
            value = _cameras(text)
            if not value:  # rcl cannot pass an empty list: the file's cameras stay
                continue
        elif argument == "use_compressed":
            value = _transport(text)
        else:
            value = text
        parameters[parameter] = value
    return parameters


def _node(context) -> list[Node]:
    namespace = LaunchConfiguration("namespace").perform(context)
    params_file = LaunchConfiguration("params_file").perform(context)
    given = _given_parameters(context)
    # launch_ros only warns about a missing parameter file and starts the node without it.
    if not os.path.isfile(params_file):
        raise ValueError(f"params_file {params_file}: no such file")
    image = LaunchConfiguration("image_topic").perform(context)
    remappings = [(topic, LaunchConfiguration(argument).perform(context))
                  for topic, argument in REMAPPED_BY.items()]
    remappings.append(("image/compressed", f"{image}/compressed"))
    # Only the topics whose argument differs from the topic's own name are remapped.
    remappings = [(topic, target) for topic, target in remappings if target != topic]
    return [Node(
        package="depth_pro_ros",
        executable="depth_pro_node",
        name=NODE_NAME,
        namespace=namespace,
        output="screen",
        emulate_tty=True,
        # Later entries win: the file over the node's defaults, given arguments over both.
        parameters=[params_file] + ([given] if given else []),
        remappings=remappings or None,
    )]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS]
        + [OpaqueFunction(function=_node)]
    )
