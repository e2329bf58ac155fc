"""Launch the GLACE relocalizer node with the package's config/relocalizer.yaml.

    ros2 launch glace_ros relocalizer.launch.py map_path:=/maps/office.pt \
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info

Every argument below overrides the parameter of the same name from ``params_file`` (default: the
shipped config/relocalizer.yaml); their defaults are that file's values. Other parameters: pass your
own ``params_file``. ``map_path`` has no default and must be given.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = "glace_ros"
EXECUTABLE = "relocalizer"
NODE_NAME = "glace_relocalizer"

# (argument = parameter name, default, type of the parameter, description)
_TYPES = {"str": str, "bool": bool}
PARAMETER_ARGUMENTS = [
    ("map_path", None, "str", "GLACE map (head) file to localize against (required)"),
    ("encoder_path", "", "str", "encoder weights file or named encoder; empty: the shipped default"),
    ("device", "auto", "str", "auto, cpu or cuda"),
    ("image_topic", "/camera/image_raw", "str", "sensor_msgs/Image topic (the CompressedImage base with use_compressed)"),
    ("camera_info_topic", "/camera/camera_info", "str", "sensor_msgs/CameraInfo topic"),
    ("use_compressed", "false", "bool", "subscribe to <image_topic>/compressed"),
    ("global_checkpoint", "", "str", "R2Former checkpoint for heads with global input"),
    ("map_frame", "map", "str", "frame of the published poses"),
    ("tf_mode", "camera", "str", "camera: map -> camera on /tf; odom: REP-105 map -> odom"),
    ("publish_tf", "true", "bool", "publish the pose on /tf"),
    ("publish_initialpose", "false", "bool", "also publish on /initialpose (Nav2 AMCL)"),
]


def generate_launch_description():
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "relocalizer.yaml"])
    arguments = [
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML parameter file of the node"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("log_level", default_value="info", description="node log level"),
    ]
    overrides = {}
    for name, default, value_type, description in PARAMETER_ARGUMENTS:
        if default is None:
            arguments.append(DeclareLaunchArgument(name, description=description))
        else:
            arguments.append(DeclareLaunchArgument(name, default_value=default, description=description))
        overrides[name] = ParameterValue(LaunchConfiguration(name), value_type=_TYPES[value_type])

    node = Node(
        package=PACKAGE,
        executable=EXECUTABLE,
        name=NODE_NAME,
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file"), overrides],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
    )
    return LaunchDescription(arguments + [node])
