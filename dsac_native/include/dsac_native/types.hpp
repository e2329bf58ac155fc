// Plain data shared by every part of dsac_native: intrinsics, pose, options, statistics.
//
// Pose convention: `Pose` holds the world-to-camera transform X_cam = R * X_world + t in OpenCV
// optical axes (x right, y down, z forward). The public result is camera-to-world (its inverse).
// Pixels are continuous coordinates with the origin at the image's top-left corner.
#pragma once

#include <cmath>
#include <cstdint>

#include <Eigen/Core>
#include <Eigen/Geometry>

namespace dsac_native {

// Points closer than this along the optical axis count as "behind the camera".
constexpr double kMinDepth = 1e-6;

struct Intrinsics {
  double fx = 1.0, fy = 1.0, cx = 0.0, cy = 0.0;
};

struct Pose {  // world-to-camera
  Eigen::Matrix3d R = Eigen::Matrix3d::Identity();
  Eigen::Vector3d t = Eigen::Vector3d::Zero();
};

struct Options {
  int hypotheses = 64;                  // hypotheses scored with the DSAC* soft score
  double threshold = 10.0;              // inlier threshold (px)
  double inlier_alpha = 100.0;          // soft score scale
  double max_reprojection_error = 100.0;  // error clamp (px)
  int max_refinement_iterations = 100;  // rounds of refit-on-inliers
  std::uint64_t seed = 0;
  int num_threads = 0;                  // 0: std::thread::hardware_concurrency()
  // Sampling beyond the reference (robust to high outlier ratios): cheap P3P candidates are
  // drawn in batches and ranked by their inlier count on `prescore_cells` random cells (float32
  // SIMD; a candidate with no inlier among the first 64 of them and a disagreeing 4th sample cell
  // stops there and scores 0), until the RANSAC stopping rule at `confidence` is met or
  // `max_candidates` were drawn.
  // 20000: on scene coordinates of the bench scenes the poorly routed candidate head of an ensemble
  // (1-2 % inliers) ran to the cap, 70-80 ms per solve at 100000; 20000 gave the same accuracy on
  // six scenes with a 3-5x lower p90 (BENCHMARKS.md "Real time through the node").
  int max_candidates = 20000;
  double confidence = 0.9999;
  int prescore_cells = 256;
  int max_batch = 1024;                 // largest candidate batch between two stopping checks
  int lm_iterations = 20;               // Levenberg-Marquardt iterations per refinement round
};

struct Stats {
  double score = 0.0;                // DSAC* soft score of the chosen hypothesis
  int hypotheses_generated = 0;      // P3P candidates drawn (minimal samples)
  int hypotheses_valid = 0;          // candidates for which P3P returned a pose
  int hypotheses_scored = 0;         // candidates scored on all cells with the soft score
  int batches = 0;
  int valid_cells = 0;               // finite correspondences
  int num_cells = 0;                 // all cells (the soft score is scaled by alpha / num_cells)
  int refinement_iterations = 0;     // refit rounds done
  double mean_inlier_error = 0.0;    // px, final pose, over the final inliers
  double time_sampling_s = 0.0;
  double time_scoring_s = 0.0;
  double time_refinement_s = 0.0;
  double time_total_s = 0.0;
  int num_threads = 1;
};

struct Result {
  bool success = false;
  Eigen::Matrix4d camera_to_world = Eigen::Matrix4d::Identity();
  int inlier_count = 0;              // cells with error < threshold under the returned pose
  Stats stats;
};

// Reprojection error in pixels of world point X observed at pixel (u, v); returns a negative value
// when X is behind the camera.
inline double reprojection_error(const Pose& pose, const Intrinsics& K, const double* X, const double* uv) {
  const Eigen::Vector3d p = pose.R * Eigen::Map<const Eigen::Vector3d>(X) + pose.t;
  if (!(p.z() > kMinDepth)) return -1.0;
  const double du = K.fx * p.x() / p.z() + K.cx - uv[0];
  const double dv = K.fy * p.y() / p.z() + K.cy - uv[1];
  return std::sqrt(du * du + dv * dv);
}

}  // namespace dsac_native
