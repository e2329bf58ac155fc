// P3P after Persson & Nordberg, "Lambda Twist" (ECCV 2018), written from the paper's equations.
//
// Unknown depths L = (l0, l1, l2) along the bearings y_i satisfy, for each pair (i, j),
//   li^2 + lj^2 + bij li lj = aij,   bij = -2 yi.yj,   aij = |xi - xj|^2.
// Eliminating the right-hand sides gives two homogeneous conics L'D1 L = 0 and L'D2 L = 0. A
// degenerate member D0 = D1 + g D2 of their pencil (g a root of the cubic det(D1 + g D2) = 0)
// factors into two planes through the origin; intersecting each plane with conic D2 gives the
// depth ratios, and a23 fixes the scale. The pose then follows from the three camera points.
#include "dsac_native/p3p.hpp"

#include <algorithm>
#include <cmath>

#include <Eigen/Eigenvalues>
#include <Eigen/LU>

namespace dsac_native {
namespace {

Eigen::Matrix3d adjugate(const Eigen::Matrix3d& A) {
  Eigen::Matrix3d C;  // cofactor transposed
  C(0, 0) = A(1, 1) * A(2, 2) - A(1, 2) * A(2, 1);
  C(0, 1) = A(0, 2) * A(2, 1) - A(0, 1) * A(2, 2);
  C(0, 2) = A(0, 1) * A(1, 2) - A(0, 2) * A(1, 1);
  C(1, 0) = A(1, 2) * A(2, 0) - A(1, 0) * A(2, 2);
  C(1, 1) = A(0, 0) * A(2, 2) - A(0, 2) * A(2, 0);
  C(1, 2) = A(0, 2) * A(1, 0) - A(0, 0) * A(1, 2);
  C(2, 0) = A(1, 0) * A(2, 1) - A(1, 1) * A(2, 0);
  C(2, 1) = A(0, 1) * A(2, 0) - A(0, 0) * A(2, 1);
  C(2, 2) = A(0, 0) * A(1, 1) - A(0, 1) * A(1, 0);
  return C;
}

// Real roots of c3 x^3 + c2 x^2 + c1 x + c0, polished by Newton steps.
int solve_cubic(double c3, double c2, double c1, double c0, double roots[3]) {
  const double scale = std::max({std::abs(c3), std::abs(c2), std::abs(c1), std::abs(c0)});
  if (!(scale > 0.0) || !std::isfinite(scale)) return 0;
  int n = 0;
  if (std::abs(c3) < 1e-12 * scale) {  // quadratic
    if (std::abs(c2) < 1e-12 * scale) {
      if (std::abs(c1) < 1e-12 * scale) return 0;
      roots[0] = -c0 / c1;
      return 1;
    }
    const double disc = c1 * c1 - 4.0 * c2 * c0;
    if (disc < 0.0) return 0;
    const double q = -0.5 * (c1 + std::copysign(std::sqrt(disc), c1));
    roots[n++] = q / c2;
    if (q != 0.0) roots[n++] = c0 / q;
    return n;
  }
  const double a = c2 / c3, b = c1 / c3, c = c0 / c3;
  const double Q = (a * a - 3.0 * b) / 9.0;
  const double R = (2.0 * a * a * a - 9.0 * a * b + 27.0 * c) / 54.0;
  const double Q3 = Q * Q * Q;
  if (R * R < Q3) {
    const double theta = std::acos(std::clamp(R / std::sqrt(Q3), -1.0, 1.0));
    const double m = -2.0 * std::sqrt(Q);
    roots[0] = m * std::cos(theta / 3.0) - a / 3.0;
    roots[1] = m * std::cos((theta + 2.0 * M_PI) / 3.0) - a / 3.0;
    roots[2] = m * std::cos((theta - 2.0 * M_PI) / 3.0) - a / 3.0;
    n = 3;
  } else {
    const double A = -std::copysign(std::cbrt(std::abs(R) + std::sqrt(R * R - Q3)), R);
    const double B = (A != 0.0) ? Q / A : 0.0;
    roots[0] = (A + B) - a / 3.0;
    n = 1;
  }
  for (int i = 0; i < n; ++i) {
    double x = roots[i];
    for (int it = 0; it < 3; ++it) {
      const double f = ((x + a) * x + b) * x + c;
      const double df = (3.0 * x + 2.0 * a) * x + b;
      if (df == 0.0) break;
      x -= f / df;
    }
    roots[i] = x;
  }
  return n;
}

// Gauss-Newton on the three distance equations.
void refine_depths(const double b12, const double b13, const double b23, const double a12,
                   const double a13, const double a23, Eigen::Vector3d* L) {
  for (int it = 0; it < 4; ++it) {
    const double l0 = (*L)(0), l1 = (*L)(1), l2 = (*L)(2);
    Eigen::Vector3d r(l0 * l0 + l1 * l1 + b12 * l0 * l1 - a12, l0 * l0 + l2 * l2 + b13 * l0 * l2 - a13,
                      l1 * l1 + l2 * l2 + b23 * l1 * l2 - a23);
    Eigen::Matrix3d J;
    J << 2 * l0 + b12 * l1, 2 * l1 + b12 * l0, 0.0,  //
        2 * l0 + b13 * l2, 0.0, 2 * l2 + b13 * l0,     //
        0.0, 2 * l1 + b23 * l2, 2 * l2 + b23 * l1;
    const double det = J.determinant();
    if (std::abs(det) < 1e-300) return;
    const Eigen::Vector3d step = J.inverse() * r;
    if (!step.allFinite()) return;
    *L -= step;
    if (step.squaredNorm() < 1e-28 * L->squaredNorm()) return;
  }
}

}  // namespace

int p3p(const Eigen::Vector3d y[3], const Eigen::Vector3d x[3], Pose out[4]) {
  const Eigen::Vector3d d12 = x[0] - x[1], d13 = x[0] - x[2], d23 = x[1] - x[2];
  const double a12 = d12.squaredNorm(), a13 = d13.squaredNorm(), a23 = d23.squaredNorm();
  const double amax = std::max({a12, a13, a23});
  if (!(amax > 0.0) || std::min({a12, a13, a23}) < 1e-12 * amax) return 0;
  const Eigen::Vector3d n_world = d12.cross(d13);
  if (n_world.squaredNorm() < 1e-10 * a12 * a13) return 0;  // collinear world points

  const double b12 = -2.0 * y[0].dot(y[1]), b13 = -2.0 * y[0].dot(y[2]), b23 = -2.0 * y[1].dot(y[2]);
  Eigen::Matrix3d M12, M13, M23;
  M12 << 1, b12 / 2, 0, b12 / 2, 1, 0, 0, 0, 0;
  M13 << 1, 0, b13 / 2, 0, 0, 0, b13 / 2, 0, 1;
  M23 << 0, 0, 0, 0, 1, b23 / 2, 0, b23 / 2, 1;
  const Eigen::Matrix3d D1 = a23 * M12 - a12 * M23;
  const Eigen::Matrix3d D2 = a23 * M13 - a13 * M23;

  // det(D1 + g D2) = det D1 + g tr(adj(D1) D2) + g^2 tr(adj(D2) D1) + g^3 det D2
  const double c0 = D1.determinant(), c3 = D2.determinant();
  const double c1 = (adjugate(D1) * D2).trace(), c2 = (adjugate(D2) * D1).trace();
  double gammas[3];
  const int num_gammas = solve_cubic(c3, c2, c1, c0, gammas);

  Eigen::Vector3d depths[4];
  int num_depths = 0;
  for (int gi = 0; gi < num_gammas && num_depths == 0; ++gi) {
    const Eigen::Matrix3d D0 = D1 + gammas[gi] * D2;
    Eigen::SelfAdjointEigenSolver<Eigen::Matrix3d> eig;
    eig.computeDirect(D0);
    const Eigen::Vector3d ev = eig.eigenvalues();  // ascending
    const double evmax = ev.cwiseAbs().maxCoeff();
    // the null eigenvalue sits between a negative and a positive one for a real line pair
    const double s_neg = ev(0), s_pos = ev(2);
    if (!(s_neg < 0.0 && s_pos > 0.0) || std::abs(ev(1)) > 1e-4 * evmax) continue;
    const Eigen::Vector3d e_neg = eig.eigenvectors().col(0), e_pos = eig.eigenvectors().col(2);
    for (int sign = -1; sign <= 1; sign += 2) {
      const Eigen::Vector3d n = std::sqrt(s_pos) * e_pos + sign * std::sqrt(-s_neg) * e_neg;
      const Eigen::Vector3d e = std::abs(n.x()) < 0.9 * n.norm() ? Eigen::Vector3d::UnitX() : Eigen::Vector3d::UnitY();
      const Eigen::Vector3d u = n.cross(e).normalized();
      const Eigen::Vector3d v = n.cross(u).normalized();
      // L = u + tau v on the plane; (u + tau v)' D2 (u + tau v) = 0
      const double qa = v.dot(D2 * v), qb = u.dot(D2 * v), qc = u.dot(D2 * u);
      Eigen::Vector3d cands[2];
      int num_cands = 0;
      const double qs = std::max({std::abs(qa), std::abs(qb), std::abs(qc)});
      if (!(qs > 0.0)) continue;
      if (std::abs(qa) < 1e-12 * qs) {
        cands[num_cands++] = v;
        if (std::abs(qb) > 1e-12 * qs) cands[num_cands++] = u - qc / (2.0 * qb) * v;
      } else {
        const double disc = qb * qb - qa * qc;
        if (disc < 0.0) continue;
        const double sq = std::sqrt(disc);
        cands[num_cands++] = u + ((-qb + sq) / qa) * v;
        cands[num_cands++] = u + ((-qb - sq) / qa) * v;
      }
      for (int k = 0; k < num_cands && num_depths < 4; ++k) {
        Eigen::Vector3d L = cands[k];
        const double q = L(1) * L(1) + L(2) * L(2) + b23 * L(1) * L(2);
        if (!(q > 0.0)) continue;
        L *= std::sqrt(a23 / q);
        if (L.sum() < 0.0) L = -L;
        if (!(L.minCoeff() > 0.0)) continue;
        refine_depths(b12, b13, b23, a12, a13, a23, &L);
        if (!L.allFinite() || !(L.minCoeff() > 0.0)) continue;
        bool duplicate = false;
        for (int j = 0; j < num_depths; ++j) duplicate |= (depths[j] - L).norm() < 1e-9 * L.norm();
        if (!duplicate) depths[num_depths++] = L;
      }
    }
  }

  // Pose from camera points: R [d12 d13 d12xd13] = [c12 c13 c12xc13].
  Eigen::Matrix3d X;
  X << d12, d13, n_world;
  const Eigen::Matrix3d X_inv = X.inverse();
  int num_poses = 0;
  for (int i = 0; i < num_depths; ++i) {
    const Eigen::Vector3d p0 = depths[i](0) * y[0], p1 = depths[i](1) * y[1], p2 = depths[i](2) * y[2];
    const Eigen::Vector3d c12 = p0 - p1, c13 = p0 - p2;
    Eigen::Matrix3d Y;
    Y << c12, c13, c12.cross(c13);
    Eigen::Quaterniond q(Eigen::Matrix3d(Y * X_inv));
    if (!q.coeffs().allFinite() || q.norm() < 1e-12) continue;
    q.normalize();
    Pose& pose = out[num_poses];
    pose.R = q.toRotationMatrix();
    pose.t = p0 - pose.R * x[0];
    if (pose.t.allFinite()) ++num_poses;
  }
  return num_poses;
}

}  // namespace dsac_native
