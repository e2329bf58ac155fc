// The RANSAC loop: candidate generation (P3P on random minimal samples), cheap pre-scoring on a
// random subset of cells with an adaptive stopping rule, DSAC* soft scoring of the best
// `hypotheses` candidates on all cells, then iterative refinement on the inliers.
//
// Determinism: candidate k is drawn by Rng(seed, k) and written to slot k; batch sizes and the
// stopping decision depend only on results already merged in index order. The same seed therefore
// gives the same pose for any thread count.
#include "dsac_native/ransac.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "dsac_native/p3p.hpp"
#include "dsac_native/refine.hpp"
#include "dsac_native/rng.hpp"
#include "dsac_native/thread_pool.hpp"

namespace dsac_native {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Candidate {
  Pose pose;
  int count = -1;       // inliers on the pre-score subset (+1 if the 4th sample point agrees)
  double fourth_error = 0.0;
  int index = 0;        // candidate index (tie-break)
  bool valid = false;
};

bool better(const Candidate& a, const Candidate& b) {
  if (a.count != b.count) return a.count > b.count;
  return a.index < b.index;
}

class Estimator {
 public:
  Estimator(const Correspondences& data, const Intrinsics& K, const Options& opt)
      : data_(data), K_(K), opt_(opt), n_(data.size()) {
    // bearings of all cells (unit rays in the camera frame)
    bearings_.resize(3 * static_cast<std::size_t>(n_));
    for (int i = 0; i < n_; ++i) {
      Eigen::Vector3d b((data.pixels[2 * i] - K.cx) / K.fx, (data.pixels[2 * i + 1] - K.cy) / K.fy, 1.0);
      b.normalize();
      for (int k = 0; k < 3; ++k) bearings_[3 * i + k] = b(k);
    }
    // fixed random pre-score subset (partial Fisher-Yates)
    const int s = std::min(n_, std::max(opt.prescore_cells, 1));
    std::vector<int> perm(n_);
    for (int i = 0; i < n_; ++i) perm[i] = i;
    Rng rng(opt.seed, std::numeric_limits<std::uint64_t>::max());
    for (int i = 0; i < s; ++i) std::swap(perm[i], perm[i + static_cast<int>(rng.below(n_ - i))]);
    subset_.assign(perm.begin(), perm.begin() + s);
    // soft-score table over squared error
    const double thr = opt.threshold, beta = 5.0 / thr, emax = opt.max_reprojection_error;
    emax2_ = emax * emax;
    clamp_term_ = 1.0 / (1.0 + std::exp(beta * (emax - thr)));
    const double cut = std::min(thr + 34.5 / beta, emax);
    table_end_ = cut * cut;
    const int bins = 8192;
    table_scale_ = bins / table_end_;
    table_.resize(bins + 2);
    for (int k = 0; k < bins + 2; ++k)
      table_[k] = 1.0 / (1.0 + std::exp(beta * (std::sqrt(k / table_scale_) - thr)));
  }

  int subset_size() const { return static_cast<int>(subset_.size()); }

  // Candidate k: P3P on 3 random distinct cells; every solution is ranked by its inliers on the
  // subset, plus one if the 4th sample cell agrees (ties: smaller 4th-cell error).
  Candidate generate(int k) const {
    Candidate best;
    best.index = k;
    Rng rng(opt_.seed, static_cast<std::uint64_t>(k));
    for (int attempt = 0; attempt < 8; ++attempt) {
      int idx[4];
      for (int j = 0; j < 4; ++j) {
        bool fresh;
        do {
          idx[j] = static_cast<int>(rng.below(static_cast<std::uint32_t>(n_)));
          fresh = true;
          for (int m = 0; m < j; ++m) fresh &= idx[m] != idx[j];
        } while (!fresh);
      }
      Eigen::Vector3d y[3], x[3];
      for (int j = 0; j < 3; ++j) {
        y[j] = Eigen::Map<const Eigen::Vector3d>(&bearings_[3 * idx[j]]);
        x[j] = Eigen::Map<const Eigen::Vector3d>(&data_.points[3 * idx[j]]);
      }
      Pose poses[4];
      const int m = p3p(y, x, poses);
      if (m == 0) continue;
      for (int j = 0; j < m; ++j) {
        double e4 = reprojection_error(poses[j], K_, &data_.points[3 * idx[3]], &data_.pixels[2 * idx[3]]);
        if (e4 < 0.0) e4 = std::numeric_limits<double>::infinity();
        const int count = subset_inliers(poses[j]) + (e4 < opt_.threshold ? 1 : 0);
        if (!best.valid || count > best.count || (count == best.count && e4 < best.fourth_error)) {
          best.pose = poses[j];
          best.count = count;
          best.fourth_error = e4;
          best.valid = true;
        }
      }
      return best;
    }
    return best;
  }

  int subset_inliers(const Pose& pose) const {
    const double thr2 = opt_.threshold * opt_.threshold;
    int count = 0;
    for (const int i : subset_) count += inlier(pose, i, thr2);
    return count;
  }

  bool inlier(const Pose& pose, int i, double thr2) const {
    const Eigen::Vector3d p = pose.R * Eigen::Map<const Eigen::Vector3d>(&data_.points[3 * i]) + pose.t;
    if (!(p.z() > kMinDepth)) return false;
    const double du = K_.fx * p.x() / p.z() + K_.cx - data_.pixels[2 * i];
    const double dv = K_.fy * p.y() / p.z() + K_.cy - data_.pixels[2 * i + 1];
    return du * du + dv * dv < thr2;
  }

  // DSAC* soft inlier score over all valid cells (cells behind the camera contribute nothing).
  // 1 - sigmoid(beta (e - thr)) is tabulated over e^2 (linear interpolation, |error| < 1e-6);
  // terms below 1e-15 (e > thr + 34.5 / beta, under the clamp) are skipped.
  double soft_score(const Pose& pose) const {
    double sum = 0.0;
    for (int i = 0; i < n_; ++i) {
      const Eigen::Vector3d p = pose.R * Eigen::Map<const Eigen::Vector3d>(&data_.points[3 * i]) + pose.t;
      if (!(p.z() > kMinDepth)) continue;
      const double iz = 1.0 / p.z();
      const double du = K_.fx * p.x() * iz + K_.cx - data_.pixels[2 * i];
      const double dv = K_.fy * p.y() * iz + K_.cy - data_.pixels[2 * i + 1];
      const double e2 = du * du + dv * dv;
      if (e2 >= emax2_) {
        sum += clamp_term_;
      } else if (e2 < table_end_) {
        const double f = e2 * table_scale_;
        const int k = static_cast<int>(f);
        sum += table_[k] + (f - k) * (table_[k + 1] - table_[k]);
      }
    }
    return sum * opt_.inlier_alpha / std::max(data_.num_cells, 1);
  }

  std::vector<int> inliers(const Pose& pose) const {
    const double thr2 = opt_.threshold * opt_.threshold;
    std::vector<int> out;
    for (int i = 0; i < n_; ++i)
      if (inlier(pose, i, thr2)) out.push_back(i);
    return out;
  }

 private:
  const Correspondences& data_;
  const Intrinsics K_;
  const Options opt_;
  const int n_;
  std::vector<double> bearings_;
  std::vector<int> subset_;
  std::vector<double> table_;
  double table_scale_ = 1.0, table_end_ = 0.0, emax2_ = 0.0, clamp_term_ = 0.0;
};

// Samples needed so that an all-inlier 3-point sample was drawn with probability `confidence`.
double required_samples(double inlier_ratio, double confidence) {
  if (inlier_ratio <= 0.0) return std::numeric_limits<double>::infinity();
  const double p = std::pow(std::min(inlier_ratio, 1.0), 3);
  if (p >= 1.0) return 1.0;
  return std::ceil(std::log(1.0 - confidence) / std::log(1.0 - p));
}

}  // namespace

void validate(const Intrinsics& K, const Options& o) {
  auto positive = [](double v) { return std::isfinite(v) && v > 0.0; };
  if (!positive(K.fx) || !positive(K.fy))
    throw std::invalid_argument("focal lengths must be finite and > 0, got fx=" + std::to_string(K.fx) +
                                " fy=" + std::to_string(K.fy));
  if (!std::isfinite(K.cx) || !std::isfinite(K.cy))
    throw std::invalid_argument("principal point must be finite");
  if (o.hypotheses < 1) throw std::invalid_argument("hypotheses must be >= 1");
  if (!positive(o.threshold)) throw std::invalid_argument("threshold must be finite and > 0");
  if (!positive(o.inlier_alpha)) throw std::invalid_argument("inlier_alpha must be finite and > 0");
  if (!positive(o.max_reprojection_error)) throw std::invalid_argument("max_reprojection_error must be finite and > 0");
  if (o.max_refinement_iterations < 0) throw std::invalid_argument("max_refinement_iterations must be >= 0");
  if (o.num_threads < 0) throw std::invalid_argument("num_threads must be >= 0 (0: all cores)");
  if (o.max_candidates < 1) throw std::invalid_argument("max_candidates must be >= 1");
  if (!(o.confidence > 0.0 && o.confidence < 1.0)) throw std::invalid_argument("confidence must be in (0, 1)");
  if (o.prescore_cells < 1) throw std::invalid_argument("prescore_cells must be >= 1");
  if (o.max_batch < 1) throw std::invalid_argument("max_batch must be >= 1");
  if (o.lm_iterations < 0) throw std::invalid_argument("lm_iterations must be >= 0");
}

Result ransac_pose(const Correspondences& data, const Intrinsics& K, const Options& opt) {
  validate(K, opt);
  const auto t_start = Clock::now();
  Result result;
  Stats& st = result.stats;
  const int n = data.size();
  st.valid_cells = n;
  st.num_cells = data.num_cells;
  if (n < 4) {
    st.time_total_s = seconds_since(t_start);
    return result;
  }
  ThreadPool pool(opt.num_threads);
  st.num_threads = pool.size();
  Estimator est(data, K, opt);

  // 1. candidates in batches until the stopping rule holds; keep the best `hypotheses`.
  auto t0 = Clock::now();
  std::vector<Candidate> kept, batch;
  int done = 0, best_count = 0;
  double needed = std::numeric_limits<double>::infinity();
  const int max_candidates = std::max(opt.max_candidates, opt.hypotheses);
  while (done < max_candidates && !(done >= needed)) {
    int size = opt.hypotheses;
    if (done > 0) {
      const double want = std::isfinite(needed) ? needed - done : static_cast<double>(opt.max_batch);
      size = static_cast<int>(std::clamp(want, static_cast<double>(opt.hypotheses),
                                         static_cast<double>(std::max(opt.max_batch, opt.hypotheses))));
    }
    size = std::min(size, max_candidates - done);
    batch.assign(size, Candidate());
    pool.parallel_for(size, [&](std::size_t b, std::size_t e) {
      for (std::size_t j = b; j < e; ++j) batch[j] = est.generate(done + static_cast<int>(j));
    });
    for (const Candidate& c : batch) {
      if (!c.valid) continue;
      ++st.hypotheses_valid;
      best_count = std::max(best_count, c.count);
      kept.push_back(c);
    }
    if (static_cast<int>(kept.size()) > opt.hypotheses) {
      std::nth_element(kept.begin(), kept.begin() + opt.hypotheses, kept.end(), better);
      kept.resize(opt.hypotheses);
    }
    done += size;
    ++st.batches;
    needed = required_samples(static_cast<double>(best_count) / (est.subset_size() + 1), opt.confidence);
  }
  st.hypotheses_generated = done;
  st.time_sampling_s = seconds_since(t0);
  if (kept.empty()) {
    st.time_total_s = seconds_since(t_start);
    return result;
  }
  std::sort(kept.begin(), kept.end(), [](const Candidate& a, const Candidate& b) { return a.index < b.index; });

  // 2. DSAC* soft score on all cells; argmax (ties: lowest candidate index).
  t0 = Clock::now();
  std::vector<double> scores(kept.size());
  pool.parallel_for(kept.size(), [&](std::size_t b, std::size_t e) {
    for (std::size_t j = b; j < e; ++j) scores[j] = est.soft_score(kept[j].pose);
  });
  std::size_t best = 0;
  for (std::size_t j = 1; j < kept.size(); ++j)
    if (scores[j] > scores[best]) best = j;
  st.hypotheses_scored = static_cast<int>(kept.size());
  st.score = scores[best];
  st.time_scoring_s = seconds_since(t0);

  // 3. refit on the inliers while the inlier set grows.
  t0 = Clock::now();
  Pose pose = kept[best].pose;
  int previous = 0;
  std::vector<int> in = est.inliers(pose);
  for (int round = 0; round < opt.max_refinement_iterations; ++round) {
    if (static_cast<int>(in.size()) <= previous || in.size() < 4) break;
    previous = static_cast<int>(in.size());
    Pose refined = pose;
    refine_pose(data.pixels.data(), data.points.data(), in, K, opt.lm_iterations, &refined);
    ++st.refinement_iterations;
    if (!refined.R.allFinite() || !refined.t.allFinite()) break;
    std::vector<int> next = est.inliers(refined);
    if (next.size() < in.size()) break;  // keep the better pose when a refit loses inliers
    pose = refined;
    in.swap(next);
  }
  double err_sum = 0.0;
  for (const int i : in) err_sum += reprojection_error(pose, K, &data.points[3 * i], &data.pixels[2 * i]);
  st.mean_inlier_error = in.empty() ? 0.0 : err_sum / static_cast<double>(in.size());
  st.time_refinement_s = seconds_since(t0);

  result.inlier_count = static_cast<int>(in.size());
  result.camera_to_world.setIdentity();
  result.camera_to_world.topLeftCorner<3, 3>() = pose.R.transpose();
  result.camera_to_world.topRightCorner<3, 1>() = -pose.R.transpose() * pose.t;
  result.success = result.camera_to_world.allFinite() && result.inlier_count >= 4;
  if (!result.success) result.camera_to_world.setIdentity();
  st.time_total_s = seconds_since(t_start);
  return result;
}

}  // namespace dsac_native
