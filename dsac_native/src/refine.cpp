// Levenberg-Marquardt on the reprojection error, with the rotation updated on the left:
// R <- exp([w]x) R, t <- t + dt, so that d(X_cam)/dw = -[R X]x and d(X_cam)/dt = I.
#include "dsac_native/refine.hpp"

#include <cmath>

#include <Eigen/Cholesky>

namespace dsac_native {
namespace {

double cost(const double* pixels, const double* points, const std::vector<int>& indices,
            const Intrinsics& K, const Pose& pose) {
  double c = 0.0;
  for (const int i : indices) {
    const Eigen::Vector3d p = pose.R * Eigen::Map<const Eigen::Vector3d>(points + 3 * i) + pose.t;
    if (!(p.z() > kMinDepth)) continue;
    const double du = K.fx * p.x() / p.z() + K.cx - pixels[2 * i];
    const double dv = K.fy * p.y() / p.z() + K.cy - pixels[2 * i + 1];
    c += du * du + dv * dv;
  }
  return c;
}

}  // namespace

double refine_pose(const double* pixels, const double* points, const std::vector<int>& indices,
                   const Intrinsics& K, int max_iterations, Pose* pose) {
  double current = cost(pixels, points, indices, K, *pose);
  if (indices.size() < 3) return current;
  double lambda = 1e-4;
  for (int it = 0; it < max_iterations; ++it) {
    // normal equations, accumulated by hand (upper triangle, fixed-size loops vectorise)
    double h[6][6] = {}, gv[6] = {};
    for (const int i : indices) {
      const Eigen::Vector3d q = pose->R * Eigen::Map<const Eigen::Vector3d>(points + 3 * i);
      const Eigen::Vector3d p = q + pose->t;
      if (!(p.z() > kMinDepth)) continue;
      const double iz = 1.0 / p.z();
      const double ru = K.fx * p.x() * iz + K.cx - pixels[2 * i];
      const double rv = K.fy * p.y() * iz + K.cy - pixels[2 * i + 1];
      // d(u, v)/d(X_cam) rows ju = (fx/z, 0, -fx x/z^2), jv = (0, fy/z, -fy y/z^2); the pose
      // Jacobian rows are (q x ju, ju) and (q x jv, jv) since d(X_cam)/dw = -[q]x.
      const double a = K.fx * iz, b = -K.fx * p.x() * iz * iz;
      const double c = K.fy * iz, d = -K.fy * p.y() * iz * iz;
      const double Ju[6] = {q.y() * b, q.z() * a - q.x() * b, -q.y() * a, a, 0.0, b};
      const double Jv[6] = {q.y() * d - q.z() * c, -q.x() * d, q.x() * c, 0.0, c, d};
      for (int r = 0; r < 6; ++r) {
        for (int k = r; k < 6; ++k) h[r][k] += Ju[r] * Ju[k] + Jv[r] * Jv[k];
        gv[r] += Ju[r] * ru + Jv[r] * rv;
      }
    }
    Eigen::Matrix<double, 6, 6> H;
    Eigen::Matrix<double, 6, 1> g;
    for (int r = 0; r < 6; ++r) {
      g(r) = gv[r];
      for (int k = r; k < 6; ++k) H(r, k) = H(k, r) = h[r][k];
    }
    bool improved = false;
    for (int attempt = 0; attempt < 8 && !improved; ++attempt) {
      Eigen::Matrix<double, 6, 6> A = H;
      A.diagonal() += lambda * (H.diagonal().array() + 1e-9).matrix();
      const Eigen::Matrix<double, 6, 1> step = -A.ldlt().solve(g);
      if (!step.allFinite()) break;
      Pose candidate;
      const Eigen::Vector3d w = step.head<3>();
      const double angle = w.norm();
      candidate.R = (angle > 0.0 ? Eigen::AngleAxisd(angle, w / angle).toRotationMatrix()
                                 : Eigen::Matrix3d::Identity()) * pose->R;
      candidate.t = pose->t + step.tail<3>();
      const double c = cost(pixels, points, indices, K, candidate);
      if (c < current) {
        const double gain = current - c;
        *pose = candidate;
        current = c;
        lambda = std::max(lambda * 0.1, 1e-10);
        improved = true;
        if (gain < 1e-12 * (current + 1e-12) || step.norm() < 1e-12) return current;
      } else {
        lambda *= 10.0;
      }
    }
    if (!improved) break;
  }
  return current;
}

}  // namespace dsac_native
