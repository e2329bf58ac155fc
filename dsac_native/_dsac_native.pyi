"""Type stubs for the dsac_native C++ extension."""
import numpy as np
import numpy.typing as npt

class Options:
    hypotheses: int
    threshold: float
    inlier_alpha: float
    max_reprojection_error: float
    max_refinement_iterations: int
    seed: int
    num_threads: int
    max_candidates: int
    confidence: float
    prescore_cells: int
    max_batch: int
    lm_iterations: int
    def __init__(self) -> None: ...

class Stats:
    @property
    def score(self) -> float: ...
    @property
    def hypotheses_generated(self) -> int: ...
    @property
    def hypotheses_valid(self) -> int: ...
    @property
    def hypotheses_scored(self) -> int: ...
    @property
    def batches(self) -> int: ...
    @property
    def valid_cells(self) -> int: ...
    @property
    def num_cells(self) -> int: ...
    @property
    def refinement_iterations(self) -> int: ...
    @property
    def mean_inlier_error(self) -> float: ...
    @property
    def time_sampling_s(self) -> float: ...
    @property
    def time_scoring_s(self) -> float: ...
    @property
    def time_refinement_s(self) -> float: ...
    @property
    def time_total_s(self) -> float: ...
    @property
    def num_threads(self) -> int: ...

class Result:
    @property
    def success(self) -> bool: ...
    @property
    def inlier_count(self) -> int: ...
    @property
    def stats(self) -> Stats: ...
    @property
    def camera_to_world(self) -> npt.NDArray[np.float64]: ...

def estimate_pose(
    scene_coordinates: npt.NDArray[np.float32], fx: float, fy: float, cx: float, cy: float, *,
    subsampling: int = 8, hypotheses: int = 64, threshold: float = 10.0, inlier_alpha: float = 100.0,
    max_reprojection_error: float = 100.0, max_refinement_iterations: int = 100, seed: int = 0,
    num_threads: int = 0, max_candidates: int = 20000, confidence: float = 0.9999, prescore_cells: int = 256,
) -> Result: ...
def estimate_pose_from_correspondences(
    pixels: npt.NDArray[np.floating], points: npt.NDArray[np.floating], fx: float, fy: float, cx: float,
    cy: float, *, hypotheses: int = 64, threshold: float = 10.0, inlier_alpha: float = 100.0,
    max_reprojection_error: float = 100.0, max_refinement_iterations: int = 100, seed: int = 0,
    num_threads: int = 0, max_candidates: int = 20000, confidence: float = 0.9999, prescore_cells: int = 256,
) -> Result: ...
def estimate_pose_with_options(
    scene_coordinates: npt.NDArray[np.float32], fx: float, fy: float, cx: float, cy: float,
    subsampling: int = 8, options: Options = ...,
) -> Result: ...
def estimate_pose_from_correspondences_with_options(
    pixels: npt.NDArray[np.floating], points: npt.NDArray[np.floating], fx: float, fy: float, cx: float,
    cy: float, options: Options = ...,
) -> Result: ...
def kernel_isa() -> str: ...
