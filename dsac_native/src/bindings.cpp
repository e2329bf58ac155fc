// pybind11 layer: validates numpy inputs at the boundary, releases the GIL for the solve, and
// binds Options / Stats / Result as classes with fixed fields (a misspelt name raises).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "dsac_native/dsac_native.hpp"
#include "dsac_native/kernels.hpp"
#include "dsac_native/matching.hpp"

namespace py = pybind11;
using namespace dsac_native;

namespace {

std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

std::string dtype_str(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

void require_c_contiguous(const py::array& a, const char* name) {
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + " must be C-contiguous (use numpy.ascontiguousarray)");
}

// (N, cols) float32/float64 C-contiguous -> double copy
std::vector<double> rows_as_double(const py::array& a, const char* name, py::ssize_t cols) {
  if (a.ndim() != 2 || a.shape(1) != cols)
    throw py::value_error(std::string(name) + " must have shape (N, " + std::to_string(cols) + "), got " + shape_str(a));
  const bool f32 = a.dtype().is(py::dtype::of<float>()), f64 = a.dtype().is(py::dtype::of<double>());
  if (!f32 && !f64) throw py::value_error(std::string(name) + " must be float32 or float64, got " + dtype_str(a));
  require_c_contiguous(a, name);
  const std::size_t count = static_cast<std::size_t>(a.shape(0) * cols);
  std::vector<double> out(count);
  if (f32) {
    const float* p = static_cast<const float*>(a.data());
    for (std::size_t i = 0; i < count; ++i) out[i] = p[i];
  } else {
    const double* p = static_cast<const double*>(a.data());
    std::copy(p, p + count, out.begin());
  }
  return out;
}

Result grid_with_options(const py::array& sc, double fx, double fy, double cx, double cy, int subsampling,
                         const Options& opt) {
  if (sc.ndim() != 3 || sc.shape(0) != 3)
    throw py::value_error("scene_coordinates must have shape (3, H, W), got " + shape_str(sc));
  if (!sc.dtype().is(py::dtype::of<float>()))
    throw py::value_error("scene_coordinates must be float32, got " + dtype_str(sc));
  require_c_contiguous(sc, "scene_coordinates");
  const Intrinsics K{fx, fy, cx, cy};
  const int h = static_cast<int>(sc.shape(1)), w = static_cast<int>(sc.shape(2));
  const float* data = static_cast<const float*>(sc.data());
  py::gil_scoped_release release;  // `sc` stays referenced by the caller's frame
  return estimate_pose_grid(data, h, w, subsampling, K, opt);
}

Result correspondences_with_options(const py::array& pixels, const py::array& points, double fx, double fy,
                                    double cx, double cy, const Options& opt) {
  const std::vector<double> px = rows_as_double(pixels, "pixels", 2);
  const std::vector<double> pts = rows_as_double(points, "points", 3);
  if (pixels.shape(0) != points.shape(0))
    throw py::value_error("pixels and points must have the same number of rows, got " + shape_str(pixels) +
                          " and " + shape_str(points));
  const Intrinsics K{fx, fy, cx, cy};
  py::gil_scoped_release release;
  return estimate_pose_correspondences(px.data(), pts.data(), static_cast<int>(px.size() / 2), K, opt);
}

Options make_options(int hypotheses, double threshold, double inlier_alpha, double max_reprojection_error,
                     int max_refinement_iterations, std::uint64_t seed, int num_threads, int max_candidates,
                     double confidence, int prescore_cells) {
  Options o;
  o.hypotheses = hypotheses;
  o.threshold = threshold;
  o.inlier_alpha = inlier_alpha;
  o.max_reprojection_error = max_reprojection_error;
  o.max_refinement_iterations = max_refinement_iterations;
  o.seed = seed;
  o.num_threads = num_threads;
  o.max_candidates = max_candidates;
  o.confidence = confidence;
  o.prescore_cells = prescore_cells;
  return o;
}

}  // namespace

PYBIND11_MODULE(_dsac_native, m) {
  m.doc() = "DSAC*-style RANSAC pose solver (P3P hypotheses, soft inlier score, LM refinement).";
  const Options d;

  py::class_<Options>(m, "Options", "Solver options; defaults are the DSAC* test-time defaults.")
      .def(py::init<>())
      .def_readwrite("hypotheses", &Options::hypotheses)
      .def_readwrite("threshold", &Options::threshold)
      .def_readwrite("inlier_alpha", &Options::inlier_alpha)
      .def_readwrite("max_reprojection_error", &Options::max_reprojection_error)
      .def_readwrite("max_refinement_iterations", &Options::max_refinement_iterations)
      .def_readwrite("seed", &Options::seed)
      .def_readwrite("num_threads", &Options::num_threads)
      .def_readwrite("max_candidates", &Options::max_candidates)
      .def_readwrite("confidence", &Options::confidence)
      .def_readwrite("prescore_cells", &Options::prescore_cells)
      .def_readwrite("max_batch", &Options::max_batch)
      .def_readwrite("lm_iterations", &Options::lm_iterations)
      .def("__repr__", [](const Options& o) {
        std::ostringstream s;
        s << "Options(hypotheses=" << o.hypotheses << ", threshold=" << o.threshold
          << ", inlier_alpha=" << o.inlier_alpha << ", max_reprojection_error=" << o.max_reprojection_error
          << ", max_refinement_iterations=" << o.max_refinement_iterations << ", seed=" << o.seed
          << ", num_threads=" << o.num_threads << ", max_candidates=" << o.max_candidates
          << ", confidence=" << o.confidence << ", prescore_cells=" << o.prescore_cells
          << ", max_batch=" << o.max_batch << ", lm_iterations=" << o.lm_iterations << ")";
        return s.str();
      });

  py::class_<Stats>(m, "Stats", "Statistics of one solve (times in seconds).")
      .def_readonly("score", &Stats::score)
      .def_readonly("hypotheses_generated", &Stats::hypotheses_generated)
      .def_readonly("hypotheses_valid", &Stats::hypotheses_valid)
      .def_readonly("hypotheses_scored", &Stats::hypotheses_scored)
      .def_readonly("batches", &Stats::batches)
      .def_readonly("valid_cells", &Stats::valid_cells)
      .def_readonly("num_cells", &Stats::num_cells)
      .def_readonly("refinement_iterations", &Stats::refinement_iterations)
      .def_readonly("mean_inlier_error", &Stats::mean_inlier_error)
      .def_readonly("time_sampling_s", &Stats::time_sampling_s)
      .def_readonly("time_scoring_s", &Stats::time_scoring_s)
      .def_readonly("time_refinement_s", &Stats::time_refinement_s)
      .def_readonly("time_total_s", &Stats::time_total_s)
      .def_readonly("num_threads", &Stats::num_threads)
      .def("__repr__", [](const Stats& s) {
        std::ostringstream o;
        o << "Stats(score=" << s.score << ", hypotheses_generated=" << s.hypotheses_generated
          << ", hypotheses_scored=" << s.hypotheses_scored << ", valid_cells=" << s.valid_cells
          << ", refinement_iterations=" << s.refinement_iterations << ", time_total_s=" << s.time_total_s << ")";
        return o.str();
      });

  py::class_<Result>(m, "Result", "Pose result: camera_to_world is a float64 (4, 4) array (OpenCV axes).")
      .def_readonly("success", &Result::success)
      .def_readonly("inlier_count", &Result::inlier_count)
      .def_readonly("stats", &Result::stats)
      .def_property_readonly("camera_to_world", [](const Result& r) {
        py::array_t<double> out({4, 4});
        auto v = out.mutable_unchecked<2>();
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j) v(i, j) = r.camera_to_world(i, j);
        return out;
      })
      .def("__repr__", [](const Result& r) {
        return "Result(success=" + std::string(r.success ? "True" : "False") +
               ", inlier_count=" + std::to_string(r.inlier_count) + ")";
      });

  m.def(
      "estimate_pose",
      [](const py::array& sc, double fx, double fy, double cx, double cy, int subsampling, int hypotheses,
         double threshold, double inlier_alpha, double max_reprojection_error, int max_refinement_iterations,
         std::uint64_t seed, int num_threads, int max_candidates, double confidence, int prescore_cells) {
        return grid_with_options(sc, fx, fy, cx, cy, subsampling,
                                 make_options(hypotheses, threshold, inlier_alpha, max_reprojection_error,
                                              max_refinement_iterations, seed, num_threads, max_candidates,
                                              confidence, prescore_cells));
      },
      py::arg("scene_coordinates"), py::arg("fx"), py::arg("fy"), py::arg("cx"), py::arg("cy"), py::kw_only(),
      py::arg("subsampling") = 8, py::arg("hypotheses") = d.hypotheses, py::arg("threshold") = d.threshold,
      py::arg("inlier_alpha") = d.inlier_alpha, py::arg("max_reprojection_error") = d.max_reprojection_error,
      py::arg("max_refinement_iterations") = d.max_refinement_iterations, py::arg("seed") = d.seed,
      py::arg("num_threads") = d.num_threads, py::arg("max_candidates") = d.max_candidates,
      py::arg("confidence") = d.confidence, py::arg("prescore_cells") = d.prescore_cells,
      "Camera pose from a float32 (3, H, W) scene-coordinate grid; cell (x, y) is pixel "
      "(s*x + s/2, s*y + s/2) with s = subsampling.");

  m.def(
      "estimate_pose_from_correspondences",
      [](const py::array& pixels, const py::array& points, double fx, double fy, double cx, double cy,
         int hypotheses, double threshold, double inlier_alpha, double max_reprojection_error,
         int max_refinement_iterations, std::uint64_t seed, int num_threads, int max_candidates, double confidence,
         int prescore_cells) {
        return correspondences_with_options(pixels, points, fx, fy, cx, cy,
                                            make_options(hypotheses, threshold, inlier_alpha,
                                                         max_reprojection_error, max_refinement_iterations, seed,
                                                         num_threads, max_candidates, confidence, prescore_cells));
      },
      py::arg("pixels"), py::arg("points"), py::arg("fx"), py::arg("fy"), py::arg("cx"), py::arg("cy"),
      py::kw_only(), py::arg("hypotheses") = d.hypotheses, py::arg("threshold") = d.threshold,
      py::arg("inlier_alpha") = d.inlier_alpha, py::arg("max_reprojection_error") = d.max_reprojection_error,
      py::arg("max_refinement_iterations") = d.max_refinement_iterations, py::arg("seed") = d.seed,
      py::arg("num_threads") = d.num_threads, py::arg("max_candidates") = d.max_candidates,
      py::arg("confidence") = d.confidence, py::arg("prescore_cells") = d.prescore_cells,
      "Camera pose from (N, 2) pixels and (N, 3) world points (float32 or float64).");

  m.def("estimate_pose_with_options", &grid_with_options, py::arg("scene_coordinates"), py::arg("fx"),
        py::arg("fy"), py::arg("cx"), py::arg("cy"), py::arg("subsampling") = 8, py::arg("options") = Options(),
        "estimate_pose with an Options object.");
  m.def("estimate_pose_from_correspondences_with_options", &correspondences_with_options, py::arg("pixels"),
        py::arg("points"), py::arg("fx"), py::arg("fy"), py::arg("cx"), py::arg("cy"),
        py::arg("options") = Options(), "estimate_pose_from_correspondences with an Options object.");
  m.def(
      "row_column_maxima",
      [](const py::array& sim) {
        if (sim.ndim() != 2) throw py::value_error("similarity must have shape (N, M), got " + shape_str(sim));
        if (!sim.dtype().is(py::dtype::of<float>()))
          throw py::value_error("similarity must be float32, got " + dtype_str(sim));
        require_c_contiguous(sim, "similarity");
        const py::ssize_t n = sim.shape(0), m = sim.shape(1);
        if (n > INT32_MAX || m > INT32_MAX) throw py::value_error("similarity is too large: " + shape_str(sim));
        py::array_t<float> best(n), column_max(m);
        py::array_t<std::int64_t> arg(n);
        const float* data = static_cast<const float*>(sim.data());
        float* b = best.mutable_data();
        float* c = column_max.mutable_data();
        std::int64_t* a = arg.mutable_data();
        {
          py::gil_scoped_release release;
          row_column_maxima(data, static_cast<int>(n), static_cast<int>(m), b, a, c);
        }
        return py::make_tuple(best, arg, column_max);
      },
      py::arg("similarity"),
      "(best (N,) float32, arg (N,) int64, column_max (M,) float32) of a float32 (N, M) matrix: each row's "
      "maximum and the first column holding it (-1 for a row with no value above -inf), each column's maximum. "
      "NaN never counts as a maximum.");

  m.def(
      "local_maxima",
      [](const py::array& heat, int radius, float threshold, int max_count) {
        if (heat.ndim() != 2) throw py::value_error("heat must have shape (H, W), got " + shape_str(heat));
        if (!heat.dtype().is(py::dtype::of<float>()))
          throw py::value_error("heat must be float32, got " + dtype_str(heat));
        require_c_contiguous(heat, "heat");
        if (heat.shape(0) * heat.shape(1) > INT32_MAX) throw py::value_error("heat is too large: " + shape_str(heat));
        if (radius < 0) throw py::value_error("radius must be >= 0, got " + std::to_string(radius));
        if (max_count < 0) throw py::value_error("max_count must be >= 0, got " + std::to_string(max_count));
        std::vector<std::int32_t> rows, cols;
        const float* data = static_cast<const float*>(heat.data());
        const int h = static_cast<int>(heat.shape(0)), w = static_cast<int>(heat.shape(1));
        {
          py::gil_scoped_release release;
          local_maxima(data, h, w, radius, threshold, max_count, rows, cols);
        }
        py::array_t<std::int64_t> r(static_cast<py::ssize_t>(rows.size())), c(static_cast<py::ssize_t>(cols.size()));
        std::copy(rows.begin(), rows.end(), r.mutable_data());
        std::copy(cols.begin(), cols.end(), c.mutable_data());
        return py::make_tuple(r, c);
      },
      py::arg("heat"), py::kw_only(), py::arg("radius"), py::arg("threshold"), py::arg("max_count"),
      "(rows (K,) int64, cols (K,) int64): the pixels of a float32 (H, W) heatmap whose value is > threshold and "
      ">= every value within radius (a square window clipped at the borders), strongest first, ties in "
      "row-major order, at most max_count. NaN is never a peak and never blocks one.");

  m.def("kernel_isa", &dsac_native::kernel_isa,
        "'avx2' or 'baseline': the scoring kernels this process runs (DSAC_NATIVE_ISA=baseline forces baseline).");
}
