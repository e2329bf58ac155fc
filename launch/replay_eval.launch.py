"""Replay a rosbag2 through the relocalizer and score it against the bag's ground truth.

    ros2 launch glace_ros replay_eval.launch.py bag:=/bags/office_test map_path:=/maps/office.pt

Runs the ``replay_eval`` executable of glace_ros (``glace-replay-eval``). It starts the relocalizer
node itself (``glace_relocalizer``, with ``params_file``, by default the shipped
config/relocalizer.yaml, and the bag's image and CameraInfo topics), publishes the bag into the
graph, records the node's poses and writes the metrics, the poses file and the plots to ``out``.
The node is not started a second time here: two relocalizers on the same topics would answer twice.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import ExecutableInPackage, FindPackageShare

PACKAGE = "glace_ros"
EXECUTABLE = "replay_eval"

ARGUMENTS = [
    ("bag", None, "rosbag2 folder (or .mcap/.db3 file) to replay"),
    ("map_path", None, "GLACE map (head) file"),
    ("out", "replay_eval_results", "output folder (summary.json, poses file, plots)"),
    ("rate", "1.0", "replay speed as a factor of the bag's time"),
    ("gt_topic", "/ground_truth/pose", "ground-truth PoseStamped topic in the bag"),
]


def generate_launch_description():
    default_params = PathJoinSubstitution([FindPackageShare(PACKAGE), "config", "relocalizer.yaml"])
    arguments = [DeclareLaunchArgument("params_file", default_value=default_params,
                                       description="YAML parameter file of the relocalizer node")]
    for name, default, description in ARGUMENTS:
        if default is None:
            arguments.append(DeclareLaunchArgument(name, description=description))
        else:
            arguments.append(DeclareLaunchArgument(name, default_value=default, description=description))

    # ExecuteProcess, not launch_ros' Node: Node appends "--ros-args -r __node:=..." to the command
    # line, which the evaluator's argparse command line does not take.
    evaluator = ExecuteProcess(
        name="glace_replay_eval",
        output="screen",
        emulate_tty=True,
        cmd=[
            ExecutableInPackage(executable=EXECUTABLE, package=PACKAGE),
            LaunchConfiguration("bag"),
            "--map", LaunchConfiguration("map_path"),
            "--node-params", LaunchConfiguration("params_file"),
            "--out", LaunchConfiguration("out"),
            "--rate", LaunchConfiguration("rate"),
            "--gt-topic", LaunchConfiguration("gt_topic"),
        ],
    )
    return LaunchDescription(arguments + [evaluator])
