// The RANSAC loop: candidate generation (P3P on random minimal samples), cheap pre-scoring on a
// random subset of cells with an adaptive stopping rule, DSAC* soft scoring of the best
// `hypotheses` candidates on all cells, then iterative refinement on the inliers. Pre-score and
// soft score run in float32 SIMD kernels (kernels.hpp); the soft score stops early for a
// hypothesis only once it provably cannot be the argmax.
//
// Determinism: candidate k is drawn by Rng(seed, k) and written to slot k; batch sizes and the
// stopping decision depend only on results already merged in index order. The same seed therefore
// gives the same pose for any thread count.
#include "dsac_native/ransac.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "dsac_native/kernels.hpp"
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
    // float32 structure-of-arrays copies for the SIMD kernels, centred on the mean point
    Eigen::Vector3d centre = Eigen::Vector3d::Zero();
    for (int i = 0; i < n_; ++i) centre += Eigen::Map<const Eigen::Vector3d>(&data.points[3 * i]);
    centre /= std::max(n_, 1);
    all_cells_ = make_cells(data.pixels.data(), data.points.data(), n_, {}, centre);
    subset_cells_ = make_cells(data.pixels.data(), data.points.data(), n_, subset_, centre);
    const double thr = opt.threshold, beta = 5.0 / thr, emax = opt.max_reprojection_error;
    soft_.threshold = static_cast<float>(thr);
    soft_.beta = static_cast<float>(beta);
    soft_.emax2 = static_cast<float>(emax * emax);
    soft_.clamp_term = static_cast<float>(1.0 / (1.0 + std::exp(std::min(beta * (emax - thr), 80.0))));
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
        const int count = subset_inliers(poses[j], e4 < opt_.threshold);
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

  // Inliers on the pre-score subset, plus one if the 4th sample cell agrees. Bail-out: when the
  // first kEarlyCells subset cells hold no inlier and the 4th cell disagrees, the candidate is
  // almost surely wrong (an all-inlier sample at 95 % outliers fails this test 4 % of the time)
  // and scores 0 without visiting the rest.
  int subset_inliers(const Pose& pose, bool fourth_agrees) const {
    constexpr int kEarlyCells = 64;
    const float thr2 = static_cast<float>(opt_.threshold * opt_.threshold);
    const PoseF p = make_pose_f(pose, subset_cells_.centre, K_);
    const int padded = subset_cells_.padded_size(), early = std::min(kEarlyCells, padded);
    const int first = count_inliers_f(subset_cells_, p, thr2, 0, early);
    if (first == 0 && !fourth_agrees) return 0;
    return first + count_inliers_f(subset_cells_, p, thr2, early, padded) + (fourth_agrees ? 1 : 0);
  }

  bool inlier(const Pose& pose, int i, double thr2) const {
    const Eigen::Vector3d p = pose.R * Eigen::Map<const Eigen::Vector3d>(&data_.points[3 * i]) + pose.t;
    if (!(p.z() > kMinDepth)) return false;
    const double du = K_.fx * p.x() / p.z() + K_.cx - data_.pixels[2 * i];
    const double dv = K_.fy * p.y() / p.z() + K_.cy - data_.pixels[2 * i + 1];
    return du * du + dv * dv < thr2;
  }

  // DSAC* soft inlier score over all valid cells (cells behind the camera contribute nothing),
  // computed in float32 SIMD (kernels.hpp), unscaled (a sum of terms in [0, 1)). Exact early exit:
  // cells are summed in blocks, and once the partial sum plus one per remaining cell (an upper
  // bound) is below `*best` minus a rounding margin, the hypothesis cannot be the argmax and
  // -infinity is returned. Full sums raise `*best`. The argmax is therefore the same whatever the
  // order or thread in which hypotheses are scored.
  double soft_sum(const Pose& pose, std::atomic<double>* best) const {
    constexpr int kBlock = 512;
    const PoseF p = make_pose_f(pose, all_cells_.centre, K_);
    const int padded = all_cells_.padded_size();
    double sum = 0.0;
    for (int begin = 0; begin < padded; begin += kBlock) {
      const int end = std::min(begin + kBlock, padded);
      sum += soft_score_sum_f(all_cells_, p, soft_, begin, end);
      const double bound = sum + std::max(0, n_ - end) + 1.0 + 1e-4 * sum;
      if (end < padded && bound < best->load(std::memory_order_relaxed)) return -std::numeric_limits<double>::infinity();
    }
    double seen = best->load(std::memory_order_relaxed);
    while (sum > seen && !best->compare_exchange_weak(seen, sum, std::memory_order_relaxed)) {
    }
    return sum;
  }

  double scale_score(double sum) const { return sum * opt_.inlier_alpha / std::max(data_.num_cells, 1); }

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
  CellsF all_cells_, subset_cells_;
  SoftScoreParams soft_{};
};

// Fork-join costs a thread wake-up, and on a loaded machine a worker preempted inside its chunk
// stalls the join for a whole time slice; small jobs (well under a millisecond) therefore run on
// the calling thread. Results do not depend on this choice.
constexpr int kMinParallelCandidates = 256;
constexpr double kMinParallelCells = 1e6;  // hypotheses x cells of one scoring pass

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
  ThreadPool& pool = ThreadPool::shared(opt.num_threads);
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
    const auto gen_range = [&](std::size_t b, std::size_t e) {
      for (std::size_t j = b; j < e; ++j) batch[j] = est.generate(done + static_cast<int>(j));
    };
    if (size >= kMinParallelCandidates) pool.parallel_for(size, gen_range);
    else gen_range(0, size);
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
  // score in order of decreasing pre-score count, so that the likely winner raises the bound first
  std::vector<std::size_t> order(kept.size());
  for (std::size_t j = 0; j < order.size(); ++j) order[j] = j;
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return kept[a].count > kept[b].count; });
  std::vector<double> scores(kept.size());
  std::atomic<double> best_sum{-std::numeric_limits<double>::infinity()};
  const auto score_range = [&](std::size_t b, std::size_t e) {
    for (std::size_t j = b; j < e; ++j) scores[order[j]] = est.soft_sum(kept[order[j]].pose, &best_sum);
  };
  if (static_cast<double>(kept.size()) * n >= kMinParallelCells) pool.parallel_for(kept.size(), score_range);
  else score_range(0, kept.size());
  std::size_t best = 0;
  for (std::size_t j = 1; j < kept.size(); ++j)
    if (scores[j] > scores[best]) best = j;
  st.hypotheses_scored = static_cast<int>(kept.size());
  st.score = est.scale_score(scores[best]);
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
