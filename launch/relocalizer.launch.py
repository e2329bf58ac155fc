"""Launch the GLACE relocalizer node with the package's config/relocalizer.yaml.

    ros2 launch glace_ros relocalizer.launch.py map_path:=/maps/office.pt \
        image_topic:=/camera/color/image_raw camera_info_topic:=/camera/color/camera_info

``managed:=true`` starts the lifecycle variant (``relocalizer_lifecycle``) instead, unconfigured:
bring it up with nav2_lifecycle_manager (``node_names: [glace_relocalizer]``, ``bond_timeout: 0.0``)
or ``ros2 lifecycle set /glace_relocalizer configure`` then ``activate``.

Every argument below overrides the parameter of the same name from ``params_file`` (default: the
shipped config/relocalizer.yaml); their defaults are that file's values. Other parameters: pass your
own ``params_file``. ``map_path`` has no default and must be given.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import EnvironmentVariable, LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = "glace_ros"
EXECUTABLE = "relocalizer"
MANAGED_EXECUTABLE = "relocalizer_lifecycle"
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
    ("odom_frame", "odom", "str", "odometry frame (REP-105)"),
    ("base_frame", "base_link", "str", "robot frame of ~/base_pose and /initialpose"),
    ("tf_mode", "odom", "str", "odom: REP-105 map -> odom; camera: map -> tf_child_frame; none"),
    ("initialpose_mode", "off", "str", "/initialpose for Nav2 AMCL: off, once or on_jump"),
]


def generate_launch_description():
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "relocalizer.yaml"])
    arguments = [
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML parameter file of the node"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("log_level", default_value="info", description="node log level"),
        DeclareLaunchArgument("managed", default_value="false",
                              description="start the lifecycle (managed) node, unconfigured"),
    ]
    overrides = {}
    for name, default, value_type, description in PARAMETER_ARGUMENTS:
        if default is None:
            arguments.append(DeclareLaunchArgument(name, description=description))
        else:
            arguments.append(DeclareLaunchArgument(name, default_value=default, description=description))
        overrides[name] = ParameterValue(LaunchConfiguration(name), value_type=_TYPES[value_type])

    common = dict(name=NODE_NAME, namespace=LaunchConfiguration("namespace"), output="screen", emulate_tty=True,
                  parameters=[LaunchConfiguration("params_file"), overrides],
                  arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
                  # torch's OpenMP threads sleep instead of spinning between layers (scripts/env.sh says why)
                  additional_env={"OMP_WAIT_POLICY": EnvironmentVariable("OMP_WAIT_POLICY", default_value="PASSIVE")})
    node = Node(package=PACKAGE, executable=EXECUTABLE, condition=UnlessCondition(LaunchConfiguration("managed")),
                **common)
    managed = LifecycleNode(package=PACKAGE, executable=MANAGED_EXECUTABLE,
                            condition=IfCondition(LaunchConfiguration("managed")), **common)
    return LaunchDescription(arguments + [node, managed])
