"""The managed relocalizer: an rclpy LifecycleNode with the parameters of the plain node.

``glace-relocalizer-lifecycle`` / ``ros2 run glace_ros relocalizer_lifecycle``. Bring it up with
lifecycle_msgs/ChangeState on ``/<node>/change_state`` (nav2_lifecycle_manager does this; set its
``bond_timeout`` to 0.0, since rclpy nodes have no bond):

- configure: load the map, its encoder and the optional descriptor, and warm them up (a failure
  names the file and leaves the node unconfigured);
- activate: subscriptions, publishers, timers, ``~/localize`` and the worker start: poses flow;
- deactivate: all of those stop (the map stays loaded);
- cleanup: the map is freed; shutdown: from any state.
"""
from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from glace_ros.relocalizer import RelocalizerMixin, StartupError
from glace_ros.relocalizer_node import run_node
from glace_ros.relocalizer_params import NODE_NAME

__all__ = ["RelocalizerLifecycleNode", "main"]


class RelocalizerLifecycleNode(RelocalizerMixin, LifecycleNode):
    """The relocalizer as a managed node; starts unconfigured."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._declare()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except StartupError as exc:
            self.get_logger().error(str(exc))
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._activate()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self):
        self._deactivate()
        return super().destroy_node()


def main(args=None) -> int:
    """Console script ``glace-relocalizer-lifecycle`` / ``ros2 run glace_ros relocalizer_lifecycle``."""
    return run_node(RelocalizerLifecycleNode, args, prog="glace-relocalizer-lifecycle",
                    extra=" as a managed (lifecycle) node; it starts unconfigured")


if __name__ == "__main__":
    sys.exit(main())
