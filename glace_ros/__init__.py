"""glace_ros: the rclpy relocalization node and rosbag tools, on top of glace_core and dsac_native."""
__version__ = "0.1.0"
