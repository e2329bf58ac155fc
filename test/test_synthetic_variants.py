"""glace-make-scene variants (issue 18): sparse textures, changed test lighting, displaced and turned
test views, another test camera, motion blur and multi-room buildings. Each variant's written
depth and poses are checked as the default scenes are (back-projection within 1 mm), and each is
compared with the same seed without it, so a variant is shown to change only what it should."""
from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic_fixtures import backproject, gl_or_skip, room_from_json, worst_surface_distance

from glace_core.dataset import SceneSplit
from glace_core.synthetic import SceneConfig, build_rooms, make_scene, make_trajectory
from glace_core.synthetic.blur import line_kernel, motion_blur
from glace_core.synthetic.building import building_geometry, doors
from glace_core.synthetic.camera import Camera
from glace_core.synthetic.paint import FURNITURE_PAINTS, SparseAlbedo, surface_kind
from glace_core.synthetic.room import room_geometry
from glace_core.synthetic.views import BOX_CLEARANCE, WALL_CLEARANCE

RES = (36, 48)
TEST_CAMERA = "34,36,19,27,40x52"  # portrait: 40 wide, 52 high
COMMON = dict(seed=21, n_train=4, n_test=3, resolution=RES, texels_per_m=40, backend="gl", texture="sparse")
VARIANTS = {"base": {}, "light": dict(test_lighting="changed"), "blur": dict(motion_blur=4.0),
            "moved": dict(test_offset=0.3, test_yaw=20.0, test_camera=TEST_CAMERA)}
BUILDING = dict(seed=8, n_train=10, n_test=4, resolution=RES, texels_per_m=20, backend="gl", rooms=2,
                texture="sparse", test_lighting="changed", test_offset=0.25, test_yaw=15.0,
                test_camera="30,32,20,27,40x52", motion_blur=3.0)


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    gl_or_skip()
    root = tmp_path_factory.mktemp("variants")
    return {name: make_scene(root / name, **COMMON, **kw) for name, kw in VARIANTS.items()}


@pytest.fixture(scope="module")
def buildings(tmp_path_factory):
    gl_or_skip()
    root = tmp_path_factory.mktemp("buildings")
    return [make_scene(root / name, **BUILDING) for name in ("a", "b")]


def _files(root, split):
    return sorted(p.relative_to(root) for p in (root / split).rglob("*") if p.is_file())


def _same_files(a, b, split) -> bool:
    names = _files(a, split)
    return names == _files(b, split) and all((a / n).read_bytes() == (b / n).read_bytes() for n in names)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_depth_lies_on_the_room_within_1mm(variants, name):
    root = variants[name].root
    for split in ("train", "test"):
        assert worst_surface_distance(root, split) < 1e-3, (name, split)


@pytest.mark.parametrize("name", ["light", "blur", "moved"])
def test_test_options_leave_the_training_split_alone(variants, name):
    assert _same_files(variants["base"].root, variants[name].root, "train")


def test_changed_lighting_changes_only_the_test_images(variants):
    base, light = SceneSplit(variants["base"].root, "test"), SceneSplit(variants["light"].root, "test")
    for i in range(len(base)):
        np.testing.assert_array_equal(base.poses[i], light.poses[i])
        np.testing.assert_array_equal(base.load_depth_m(i), light.load_depth_m(i))
        diff = np.abs(base.load_rgb(i).astype(int) - light.load_rgb(i)).mean()
        assert diff > 5, f"test frame {i}: lighting changed the image by only {diff:.1f} levels"
    meta = json.loads((variants["light"].root / "scene.json").read_text())
    assert meta["config"]["test_lighting"] == "changed" and len(meta["test_lighting"]["positions"]) >= 2


def test_motion_blur_is_the_blurred_render(variants):
    base, blur = SceneSplit(variants["base"].root, "test"), SceneSplit(variants["blur"].root, "test")
    angles = json.loads((variants["blur"].root / "scene.json").read_text())["test_motion_blur"]["angle_rad"]
    for i in range(len(base)):
        np.testing.assert_array_equal(blur.load_rgb(i), motion_blur(base.load_rgb(i), 4.0, angles[i]))
        assert not np.array_equal(blur.load_rgb(i), base.load_rgb(i))


def test_line_kernel_is_a_streak_of_the_asked_length():
    for length, angle in ((6.0, 0.0), (9.0, np.pi / 2), (7.5, 0.6)):
        k = line_kernel(length, angle)
        assert k.sum() == pytest.approx(1.0, abs=1e-6) and np.allclose(k, k[::-1, ::-1], atol=1e-7)
        c = k.shape[0] // 2
        y, x = np.mgrid[-c:c + 1, -c:c + 1]
        along, across = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
        assert (k * along ** 2).sum() == pytest.approx(length ** 2 / 12, rel=0.15)  # a box of that length
        assert (k * across ** 2).sum() < 0.2


def test_test_camera_intrinsics_written_and_used(variants):
    info = variants["moved"]
    cam = Camera.from_spec(TEST_CAMERA)
    test, train = SceneSplit(info.root, "test"), SceneSplit(info.root, "train")
    for i in range(len(test)):
        assert test.load_rgb(i).shape == (52, 40, 3) and test.load_depth_m(i).shape == (52, 40)
        np.testing.assert_array_equal(test.intrinsics(i), cam.K)
        assert len((info.root / "test/calibration" / f"frame-{i:06d}.calibration.txt").read_text().split()) == 9
    assert len((info.root / "train/calibration/frame-000000.calibration.txt").read_text().split()) == 1
    np.testing.assert_array_equal(info.K_test, cam.K)
    np.testing.assert_array_equal(train.intrinsics(0), info.K)
    # used to render: the 1 mm test of this scene reads K from these files; the mapping camera's K fails it
    wrong = Camera(52, 40, 34.0).K  # one focal, principal point at the centre
    assert room_from_json(info.root).distance_to_surfaces(backproject(test, 0, K=wrong)).max() > 5e-3


def test_offset_and_yaw_measured_between_train_and_test(variants):
    base, moved = SceneSplit(variants["base"].root, "test"), SceneSplit(variants["moved"].root, "test")
    moves = json.loads((variants["moved"].root / "scene.json").read_text())["test_displacement"]
    achieved, yaws = np.array(moves["offset_m"]), np.array(moves["yaw_deg"])
    np.testing.assert_allclose(variants["moved"].test_displacement[:, 0], achieved)
    assert np.all(achieved <= 0.3 + 1e-12) and np.mean(achieved == 0.3) >= 0.5 and np.all(yaws == 20.0)
    for i in range(len(base)):
        a, b = base.poses[i], moved.poses[i]
        assert np.linalg.norm(b[:3, 3] - a[:3, 3]) == pytest.approx(achieved[i], abs=1e-9)
        rel = b[:3, :3] @ a[:3, :3].T  # a turn about the world vertical only
        assert rel[2, 2] == pytest.approx(1.0, abs=1e-9)
        assert abs(np.degrees(np.arctan2(rel[1, 0], rel[0, 0]))) == pytest.approx(yaws[i], abs=1e-6)


def test_sparse_albedo_is_paint_with_a_few_pictures():
    room = room_geometry(np.random.default_rng(3), 40.0)
    albedo = SparseAlbedo(room, np.random.default_rng(4))
    assert 2 <= sum(len(v) for v in albedo.pictures.values()) <= 4
    for q, name in enumerate(room.names):
        u, v = np.linalg.norm(room.U[q]), np.linalg.norm(room.V[q])
        tex = albedo(q, max(1, int(v * 40)), max(1, int(u * 40)))
        kind = surface_kind(name)[0]
        if kind == "box":  # plain: one catalogue colour, faint grain
            assert np.abs(tex.reshape(-1, 3).mean(0) - FURNITURE_PAINTS).max(1).min() < 8 and tex.std((0, 1)).max() < 8
        elif kind in ("floor", "ceiling") or q not in albedo.pictures:
            assert tex.std((0, 1)).max() < 12, name
            assert tex.std((0, 1)).max() > 0.3, name  # not perfectly uniform


@pytest.mark.parametrize("n_rooms", [2, 3, 4, 5, 6])
def test_building_geometry(n_rooms):
    room = building_geometry(n_rooms, np.random.default_rng(n_rooms), 40.0)
    rooms = [a for a in room.areas if a.open_axis < 0]
    assert len(rooms) == n_rooms and len(room.areas) == 2 * n_rooms - 1
    assert 10 <= room.size[:2].max() <= 30
    assert all(1 <= len(doors(a, room.areas[n_rooms:])) <= 2 for a in rooms)
    by_model = {}
    for box in room.boxes:
        by_model.setdefault(box.model, []).append(box)
    shared = [boxes for boxes in by_model.values()
              if len({i for i, a in enumerate(rooms) for b in boxes if a.contains(np.array([b.centre]), 0)[0]}) >= 2]
    assert shared, "some furniture model should stand in two rooms"
    assert all(b.half == boxes[0].half and b.height == boxes[0].height for boxes in shared for b in boxes)
    rng = np.random.default_rng(0)
    import torch

    for area in room.areas:  # closed: rays from inside every room and corridor hit a surface
        lo, hi = np.asarray(area.lo) + 0.6, np.asarray(area.hi) - 0.6
        xy = rng.uniform(lo, np.maximum(hi, lo + 1e-3), (4, 2))
        for p in xy:
            dirs = rng.normal(size=(300, 3))
            t, q, _, _ = room.intersect(torch.tensor([p[0], p[1], 1.2]), torch.from_numpy(dirs))
            assert (q >= 0).all() and (t > 0).all()


@pytest.mark.parametrize("n_rooms", [2, 4])
def test_building_tour_visits_every_room(n_rooms):
    room = building_geometry(n_rooms, np.random.default_rng(10 + n_rooms), 40.0)
    train, test = make_trajectory("loop", room, Camera.default(*RES), 60, 12, np.random.default_rng(1))
    rooms = [a for a in room.areas if a.open_axis < 0]
    for poses, least in ((train, 5), (test, 1)):
        xy = poses[:, :2, 3]
        assert room.free(xy, WALL_CLEARANCE - 1e-9, BOX_CLEARANCE - 1e-9).all()
        assert all(a.contains(xy, 0.0).sum() >= least for a in rooms)
    random_train, _ = make_trajectory("random", room, Camera.default(*RES), 12, 0, np.random.default_rng(2))
    assert room.free(random_train[:, :2, 3], WALL_CLEARANCE - 1e-9, BOX_CLEARANCE - 1e-9).all()


def test_building_scene_deterministic_and_exact(buildings):
    a, b = buildings
    for split in ("train", "test"):
        assert _same_files(a.root, b.root, split)
        assert worst_surface_distance(a.root, split) < 1e-3
    assert (a.root / "scene.json").read_bytes() == (b.root / "scene.json").read_bytes()
    test = SceneSplit(a.root, "test")
    np.testing.assert_array_equal(test.intrinsics(0), Camera.from_spec(BUILDING["test_camera"]).K)
    meta = json.loads((a.root / "scene.json").read_text())
    assert meta["config"]["rooms"] == 2 and len(meta["room"]["areas"]) == 3


def test_repeated_furniture_shares_its_albedo():
    calls = []
    room = building_geometry(3, np.random.default_rng(5), 20.0)
    from glace_core.synthetic.build import _shared_furniture

    albedo = _shared_furniture(room, lambda q, h, w: calls.append(q) or np.full((h, w, 3), float(q), np.float32))
    textures = {name: albedo(q, 4, 6) for q, name in enumerate(room.names)}
    faces = {(room.boxes[surface_kind(n)[2]].model, n.rsplit("_", 1)[1]) for n in room.names if "box" in n}
    assert len(calls) == len(room.names) - sum("box" in n for n in room.names) + len(faces)
    for n in room.names:
        if "box" in n:
            twin = next(m for m in room.names if "box" in m and m.rsplit("_", 1)[1] == n.rsplit("_", 1)[1]
                        and room.boxes[surface_kind(m)[2]].model == room.boxes[surface_kind(n)[2]].model)
            np.testing.assert_array_equal(textures[n], textures[twin])


def test_changed_lighting_keeps_the_training_atlas():
    same = build_rooms(6, texels_per_m=20, texture="sparse", test_lighting="same")
    changed = build_rooms(6, texels_per_m=20, texture="sparse", test_lighting="changed")
    assert same.test is same.train and changed.test_lighting is not None
    np.testing.assert_array_equal(same.train.atlas, changed.train.atlas)
    np.testing.assert_array_equal(changed.train.P0, changed.test.P0)
    assert np.abs(changed.test.atlas.astype(int) - changed.train.atlas).mean() > 5


def test_default_scene_is_todays(tmp_path):
    """Today's scene for seed 7 (values written by the generator before the variants existed)."""
    info = make_scene(tmp_path / "s", seed=7, n_train=2, n_test=1, resolution=(24, 32), texels_per_m=20,
                      backend="torch")
    meta = json.loads((tmp_path / "s" / "scene.json").read_text())
    assert list(meta) == ["generator", "config", "backend", "K", "world", "room"]
    assert list(meta["config"]) == ["seed", "n_train", "n_test", "trajectory", "resolution", "backend", "texels_per_m"]
    assert "areas" not in meta["room"] and all("model" not in b for b in meta["room"]["boxes"])
    assert meta["room"]["size_m"] == [5.176321584159776, 4.458766949925336, 2.856768502457424]
    assert meta["room"]["lights"][1] == [3.2448467690132556, 1.1149378368863567, 2.606768502457424]
    train, test = SceneSplit(info.root, "train"), SceneSplit(info.root, "test")
    np.testing.assert_allclose(train.poses[1][:3, 3], [1.7298843032116817, 1.2766266603104295, 1.4611391956762165],
                               atol=1e-9)
    np.testing.assert_allclose(test.poses[0][:3, 3], [2.9966352363898556, 0.99718181428054786, 1.1986007474020086],
                               atol=1e-9)
    assert (tmp_path / "s/test/calibration/frame-000000.calibration.txt").read_text() == "26.25\n"
    assert info.K_test is None and info.test_displacement is None


def test_bad_variant_options_raise():
    for kw, match in ((dict(texture="marble"), "texture"), (dict(rooms=7), "rooms"), (dict(rooms=0), "rooms"),
                      (dict(test_lighting="dusk"), "test_lighting"), (dict(test_offset=-1.0), "test_offset"),
                      (dict(test_yaw=200.0), "test_yaw"), (dict(motion_blur=-2.0), "motion_blur"),
                      (dict(test_camera="500,500,240x320"), "fx,fy,cx,cy,WxH"),
                      (dict(test_camera="500,500,700,320,480x640"), "cx")):
        with pytest.raises(ValueError, match=match):
            SceneConfig(**kw)


def test_cli_variant_flags(tmp_path, capsys):
    from glace_core.cli import make_scene as cli

    args = cli.build_parser().parse_args([str(tmp_path), "--texture", "sparse", "--rooms", "3", "--test-lighting",
                                          "changed", "--test-offset", "0.5", "--test-yaw", "30", "--test-camera",
                                          "500,510,240,330,480x640", "--motion-blur", "8"])
    assert (args.texture, args.rooms, args.test_lighting, args.test_offset, args.test_yaw, args.motion_blur) == \
        ("sparse", 3, "changed", 0.5, 30.0, 8.0)
    assert Camera.from_spec(args.test_camera).K[1, 2] == 330.0
    with pytest.raises(SystemExit) as exc:
        cli.main([str(tmp_path), "--test-camera", "500x500"])
    assert exc.value.code == 2
    assert cli.main([str(tmp_path / "x"), "--rooms", "9"]) == 2
    assert "rooms must be in [1, 6]" in capsys.readouterr().err
