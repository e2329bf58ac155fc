"""Headless OpenGL renderer of a synthetic room: moderngl on an EGL standalone context (Mesa
llvmpipe on machines without a GPU).

RGB goes to an RGBA8 attachment, the view-space z (exact z-depth, no depth-buffer linearisation) to
an R32F attachment. The projection maps the OpenCV image (pixel centres at i + 0.5, y down) onto GL
window coordinates with image row 0 at window row 0, so framebuffer rows read back in image order.
"""
from __future__ import annotations

import logging

import numpy as np

from glace_core.synthetic.camera import Camera
from glace_core.synthetic.room import Room

_logger = logging.getLogger(__name__)

NEAR, FAR = 0.01, 100.0

_VERTEX = """
#version 330
uniform mat4 view;  // world -> camera (OpenCV axes)
uniform mat4 proj;  // camera -> clip
in vec3 in_pos;
in vec2 in_uv;
out vec2 v_uv;
out float v_z;
void main() {
    vec4 cam = view * vec4(in_pos, 1.0);
    v_uv = in_uv;
    v_z = cam.z;
    gl_Position = proj * cam;
}
"""
_FRAGMENT = """
#version 330
uniform sampler2D atlas;
in vec2 v_uv;
in float v_z;
layout(location = 0) out vec4 out_rgb;
layout(location = 1) out float out_z;
void main() {
    out_rgb = vec4(texture(atlas, v_uv).rgb, 1.0);
    out_z = v_z;
}
"""


class GLUnavailable(RuntimeError):
    """No OpenGL context could be created (the reason is the message)."""


def create_context():
    """A moderngl standalone EGL context; raises GLUnavailable with the reason."""
    try:
        import moderngl
    except ImportError as exc:
        raise GLUnavailable(f"moderngl is not installed ({exc})") from exc
    try:
        return moderngl.create_standalone_context(backend="egl", require=330)
    except Exception as exc:  # moderngl/glcontext raise plain Exceptions
        raise GLUnavailable(f"cannot create an EGL OpenGL 3.3 context ({exc})") from exc


def projection(camera: Camera) -> np.ndarray:
    """(4, 4) float64: OpenCV camera coordinates → clip, with x_ndc = 2u/W - 1, y_ndc = 2v/H - 1
    (u, v: continuous pixel coordinates, corner origin) and z_ndc increasing with depth."""
    K = camera.K
    w, h = camera.width, camera.height
    P = np.zeros((4, 4))
    P[0, 0], P[0, 2] = 2 * K[0, 0] / w, 2 * K[0, 2] / w - 1
    P[1, 1], P[1, 2] = 2 * K[1, 1] / h, 2 * K[1, 2] / h - 1
    P[2, 2], P[2, 3] = (FAR + NEAR) / (FAR - NEAR), -2 * FAR * NEAR / (FAR - NEAR)
    P[3, 2] = 1.0
    return P


class GLRenderer:
    """Renders RGB (H, W, 3) uint8 and z-depth (H, W) float32 metres of ``room`` seen by ``camera``."""

    backend = "gl"

    def __init__(self, room: Room, camera: Camera, ctx=None):
        import moderngl

        self.room, self.camera = room, camera
        self.ctx = ctx if ctx is not None else create_context()
        ctx = self.ctx
        self.prog = ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        corners = np.stack((room.P0, room.P0 + room.U, room.P0 + room.U + room.V, room.P0 + room.V), 1)  # (Q, 4, 3)
        uv = room.quad_uv()  # (Q, 4, 2)
        verts = np.concatenate((corners, uv), -1)[:, [0, 1, 2, 0, 2, 3]].reshape(-1, 5).astype("f4")
        self.vbo = ctx.buffer(verts.tobytes())
        self.vao = ctx.vertex_array(self.prog, [(self.vbo, "3f 2f", "in_pos", "in_uv")])
        atlas = room.pyramid[0]
        self.tex = ctx.texture((atlas.shape[1], atlas.shape[0]), 3, np.ascontiguousarray(atlas).tobytes(), alignment=1)
        self.tex.build_mipmaps(0, len(room.pyramid) - 1)
        for level, image in enumerate(room.pyramid[1:], start=1):  # our own levels: the same as the torch backend
            self.tex.write(np.ascontiguousarray(image).tobytes(), level=level, alignment=1)
        self.tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        self.tex.repeat_x = self.tex.repeat_y = False
        size = (camera.width, camera.height)
        self.color = ctx.renderbuffer(size, 4)
        self.zbuf = ctx.renderbuffer(size, 1, dtype="f4")
        self.depth = ctx.depth_renderbuffer(size)
        self.fbo = ctx.framebuffer([self.color, self.zbuf], self.depth)
        self.prog["proj"].write(projection(camera).T.astype("f4").tobytes())  # GL is column-major
        self.prog["atlas"].value = 0

    def render(self, cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """cam_to_world (4, 4) OpenCV axes → rgb (H, W, 3) uint8, depth (H, W) float32 metres."""
        import moderngl

        pose = np.asarray(cam_to_world, np.float64)
        if pose.shape != (4, 4):
            raise ValueError(f"cam_to_world must be (4, 4), got {pose.shape}")
        view = np.linalg.inv(pose)
        h, w = self.camera.height, self.camera.width
        self.prog["view"].write(view.T.astype("f4").tobytes())
        self.fbo.use()
        self.ctx.viewport = (0, 0, w, h)
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.ctx.disable(moderngl.CULL_FACE)
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.tex.use(0)
        self.vao.render(moderngl.TRIANGLES)
        rgb = np.frombuffer(self.fbo.read(components=4, attachment=0, alignment=1), np.uint8).reshape(h, w, 4)
        z = np.frombuffer(self.fbo.read(components=1, attachment=1, dtype="f4", alignment=1), np.float32).reshape(h, w)
        return np.ascontiguousarray(rgb[:, :, :3]), z.copy()

    def close(self) -> None:
        for obj in (self.fbo, self.color, self.zbuf, self.depth, self.tex, self.vao, self.vbo, self.prog):
            obj.release()
        self.ctx.release()
