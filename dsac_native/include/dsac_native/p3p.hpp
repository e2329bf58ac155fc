// Minimal solver: absolute pose from three 2D-3D correspondences (P3P).
#pragma once

#include "dsac_native/types.hpp"

namespace dsac_native {

// bearings: unit viewing rays in the camera frame; points: world points. Writes up to 4
// world-to-camera poses (all three points in front of the camera) and returns how many.
// Returns 0 for degenerate input (coincident or collinear world points).
int p3p(const Eigen::Vector3d bearings[3], const Eigen::Vector3d points[3], Pose out[4]);

}  // namespace dsac_native
