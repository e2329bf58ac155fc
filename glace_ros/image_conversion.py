"""sensor_msgs Image / CompressedImage <-> numpy, without cv_bridge.

PyPI's ``cv-bridge`` does not work with OpenCV 5 and numpy 2 (16UC1 decoded as 8-bit, row padding
ignored), so the node converts images here. Every function takes real ``sensor_msgs`` messages and
also duck-typed ones (e.g. ``rosbags`` messages, whose ``data`` is a numpy array): only the fields
``height, width, encoding, is_bigendian, step, data`` (Image) or ``format, data`` (CompressedImage)
are read.

Layout conventions of the returned arrays (always a fresh C-contiguous copy in native byte order):

- single-channel encodings (mono8, mono16, 8UC1, 16UC1, 32FC1, ...): (H, W)
- multi-channel encodings: (H, W, C) in the channel order the encoding names; ``channel_order``
  says which (bgr8 stays BGR). Bayer and YUV 4:2:2 images are converted to RGB by OpenCV.

Grayscale for the encoder (:func:`image_to_gray_u8`) uses PIL's 'L' conversion exactly
(ITU-R 601-2 luma, L = (19595 R + 38470 G + 7471 B + 2^15) >> 16, i.e. R·299/1000 + G·587/1000 +
B·114/1000 rounded), which is what the reference pipeline's ``torchvision Grayscale`` applies.
16-bit images become 8-bit with ``scale16="shift"`` (v >> 8: frame-independent, right for full-range
16-bit cameras) or ``scale16="max"`` (v · 255 / max(frame): for 10/12-bit sensors in 16-bit words,
at the cost of brightness that follows the frame's maximum).

Bad input raises :class:`ImageConversionError` naming the problem.
"""
from __future__ import annotations

import re
import struct
from typing import Any

import cv2
import numpy as np

__all__ = [
    "ImageConversionError", "channel_order", "image_to_numpy", "image_to_rgb_u8", "image_to_gray_u8",
    "decode_compressed", "compressed_to_numpy", "compressed_to_rgb_u8", "compressed_to_gray_u8",
    "to_rgb_u8", "to_gray_u8", "numpy_to_image", "numpy_to_compressed", "rgb_to_gray_u8",
]


class ImageConversionError(ValueError):
    """An Image/CompressedImage that cannot be converted, with the reason in the message."""


# encoding -> (numpy dtype, channels, channel order of the returned array)
_NAMED = {
    "rgb8": (np.uint8, 3, "rgb"), "bgr8": (np.uint8, 3, "bgr"),
    "rgba8": (np.uint8, 4, "rgba"), "bgra8": (np.uint8, 4, "bgra"),
    "rgb16": (np.uint16, 3, "rgb"), "bgr16": (np.uint16, 3, "bgr"),
    "rgba16": (np.uint16, 4, "rgba"), "bgra16": (np.uint16, 4, "bgra"),
    "mono8": (np.uint8, 1, "mono"), "mono16": (np.uint16, 1, "mono"),
}
# OpenCV-style generic encodings: 8UC3, 16UC1, 32FC1, ... The 3/4-channel ones are taken as BGR/BGRA
# (OpenCV's convention) when a colour image is asked for.
_GENERIC_RE = re.compile(r"^(8U|8S|16U|16S|32S|32F|64F)C([1-4])$")
_GENERIC_DTYPES = {"8U": np.uint8, "8S": np.int8, "16U": np.uint16, "16S": np.int16,
                   "32S": np.int32, "32F": np.float32, "64F": np.float64}
_GENERIC_ORDER = {1: "mono", 2: "2ch", 3: "bgr", 4: "bgra"}
_BAYER = {  # ROS names the 2x2 pattern of the top-left corner; OpenCV's *RGGB* aliases match it
    "rggb": cv2.COLOR_BayerRGGB2RGB, "bggr": cv2.COLOR_BayerBGGR2RGB,
    "gbrg": cv2.COLOR_BayerGBRG2RGB, "grbg": cv2.COLOR_BayerGRBG2RGB,
}
_BAYER_RE = re.compile(r"^bayer_(rggb|bggr|gbrg|grbg)(8|16)$")
_YUV422 = {  # (H, W, 2) uint8 byte pairs -> RGB
    "uyvy": cv2.COLOR_YUV2RGB_UYVY, "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "yuyv": cv2.COLOR_YUV2RGB_YUYV, "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV,
}
_SCALE16 = ("shift", "max")


def _layout(encoding: str) -> tuple[np.dtype, int, str, str]:
    """encoding -> (element dtype, channels in the buffer, returned channel order, kind).

    kind is "plain", "bayer" or "yuv422".
    """
    if encoding in _NAMED:
        dtype, channels, order = _NAMED[encoding]
        return np.dtype(dtype), channels, order, "plain"
    m = _GENERIC_RE.match(encoding)
    if m:
        depth, channels = m.group(1), int(m.group(2))
        return np.dtype(_GENERIC_DTYPES[depth]), channels, _GENERIC_ORDER[channels], "plain"
    m = _BAYER_RE.match(encoding)
    if m:
        return np.dtype(np.uint8 if m.group(2) == "8" else np.uint16), 1, "rgb", "bayer"
    if encoding in _YUV422:
        return np.dtype(np.uint8), 2, "rgb", "yuv422"
    raise ImageConversionError(
        f"unknown image encoding {encoding!r}; supported: {', '.join(sorted(_NAMED))}, "
        f"{{8U,8S,16U,16S,32S,32F,64F}}C{{1-4}}, bayer_{{rggb,bggr,gbrg,grbg}}{{8,16}}, {', '.join(_YUV422)}")


def channel_order(encoding: str) -> str:
    """Channel order of :func:`image_to_numpy`'s result for ``encoding``.

    One of "mono", "rgb", "bgr", "rgba", "bgra", "2ch". Raises ImageConversionError when unknown.
    """
    return _layout(encoding)[2]


def _as_bytes(data: Any, what: str) -> np.ndarray:
    """A message's ``data`` (array.array, bytes, numpy array, list) as a flat uint8 array (no copy
    where possible)."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError) as exc:
            raise ImageConversionError(f"{what}.data is not a byte buffer ({type(data).__name__})") from exc


def image_to_numpy(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> numpy array (a copy, native byte order, C-contiguous).

    Returns:
        (H, W) for single-channel encodings, (H, W, C) otherwise, with the element type of the
        encoding (uint8, uint16, float32, ...) and channel order :func:`channel_order`. Bayer
        mosaics are demosaiced and YUV 4:2:2 converted, both to RGB (uint8, or uint16 for
        bayer_*16).

    Honours ``step`` (row padding, including steps that are not a multiple of the element size)
    and ``is_bigendian`` (multi-byte types). Raises ImageConversionError for an unknown encoding, a
    zero-size image, ``step`` smaller than a row, or ``data`` shorter than ``step * height``.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    encoding = str(msg.encoding)
    dtype, channels, _, kind = _layout(encoding)
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"zero-size image: {width}x{height} (width x height), encoding {encoding!r}")
    row_bytes = width * channels * dtype.itemsize
    if kind == "yuv422" and width % 2:
        raise ImageConversionError(f"{encoding} image width must be even (2 pixels share U and V), got {width}")
    if step < row_bytes:
        raise ImageConversionError(
            f"image step {step} is smaller than a row: width {width} x {channels} channel(s) x "
            f"{dtype.itemsize} byte(s) = {row_bytes} for encoding {encoding!r}")
    buf = _as_bytes(msg.data, "Image")
    if buf.size < step * height:
        raise ImageConversionError(
            f"image data holds {buf.size} bytes, expected step*height = {step}*{height} = {step * height} "
            f"({encoding}, {width}x{height})")
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    big = bool(msg.is_bigendian) and dtype.itemsize > 1
    src_dtype = dtype.newbyteorder(">") if big else dtype.newbyteorder("<")
    shape = (height, width) if channels == 1 else (height, width, channels)
    arr = np.ascontiguousarray(rows).view(src_dtype).reshape(shape).astype(dtype, copy=True)
    if kind == "bayer":
        return cv2.cvtColor(arr, _BAYER[encoding[6:10]])
    if kind == "yuv422":
        return cv2.cvtColor(arr, _YUV422[encoding])
    return arr


def rgb_to_gray_u8(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W) uint8 luma, bit-exact with PIL ``Image.convert('L')``."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageConversionError(f"rgb_to_gray_u8 expects (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    c = rgb.astype(np.uint32)
    luma = (c[..., 0] * 19595 + c[..., 1] * 38470 + c[..., 2] * 7471 + 0x8000) >> 16
    return luma.astype(np.uint8)


def _to_u8(arr: np.ndarray, scale16: str, encoding: str) -> np.ndarray:
    if scale16 not in _SCALE16:
        raise ValueError(f"scale16 must be one of {_SCALE16}, got {scale16!r}")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        if scale16 == "shift":
            return (arr >> 8).astype(np.uint8)
        peak = int(arr.max())
        if peak == 0:
            return np.zeros(arr.shape, np.uint8)
        return ((arr.astype(np.uint32) * 255 + peak // 2) // peak).astype(np.uint8)
    raise ImageConversionError(
        f"encoding {encoding!r} ({arr.dtype}) has no intensity scale for an 8-bit colour/gray image; "
        "publish mono8, mono16, rgb8, bgr8 (or their 16-bit, bayer or yuv422 variants)")


def _array_to_rgb_u8(arr: np.ndarray, order: str, encoding: str, scale16: str) -> np.ndarray:
    if order == "2ch":
        raise ImageConversionError(f"encoding {encoding!r} has 2 channels and no colour interpretation")
    arr = _to_u8(arr, scale16, encoding)
    if order == "mono":
        return np.repeat(arr[:, :, None], 3, axis=2)
    if order == "bgr":
        return np.ascontiguousarray(arr[:, :, ::-1])
    if order == "rgba":
        return np.ascontiguousarray(arr[:, :, :3])
    if order == "bgra":
        return np.ascontiguousarray(arr[:, :, 2::-1])
    return arr  # rgb


def _array_to_gray_u8(arr: np.ndarray, order: str, encoding: str, scale16: str) -> np.ndarray:
    if order == "mono":
        return _to_u8(arr, scale16, encoding).copy()
    return rgb_to_gray_u8(_array_to_rgb_u8(arr, order, encoding, scale16))


def image_to_rgb_u8(msg: Any, scale16: str = "shift") -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 RGB (mono replicated to 3 channels, alpha dropped).

    8UC3/8UC4 are taken as BGR/BGRA (OpenCV's convention). Float encodings raise
    ImageConversionError (no intensity scale). ``scale16``: see the module docstring.
    """
    encoding = str(msg.encoding)
    return _array_to_rgb_u8(image_to_numpy(msg), channel_order(encoding), encoding, scale16)


def image_to_gray_u8(msg: Any, scale16: str = "shift") -> np.ndarray:
    """sensor_msgs/Image -> (H, W) uint8 grayscale, PIL 'L' weights for colour images.

    mono8/8UC1 pass through; mono16/16UC1 are scaled per ``scale16`` (default v >> 8).
    """
    encoding = str(msg.encoding)
    return _array_to_gray_u8(image_to_numpy(msg), channel_order(encoding), encoding, scale16)


# --------------------------------------------------------------------------- compressed images

_COMPRESSED_DEPTH_HEADER = struct.Struct("<iff")  # compression format, depthQuantA, depthQuantB
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _decode_compressed_depth(fmt: str, data: np.ndarray) -> tuple[np.ndarray, str]:
    """compressed_depth_image_transport: a 12-byte header, then a PNG of 16UC1 depth or of quantised
    inverse depth (32FC1: depth = A / (v - B), v = 0 -> NaN)."""
    encoding = fmt.split(";")[0].strip()
    if encoding not in ("16UC1", "32FC1"):
        raise ImageConversionError(f"compressedDepth format {fmt!r}: encoding must be 16UC1 or 32FC1")
    if "rvl" in fmt.lower():
        raise ImageConversionError(f"compressedDepth RVL ({fmt!r}) is not supported; use the png codec")
    hsize = _COMPRESSED_DEPTH_HEADER.size
    if data.size < hsize + len(_PNG_MAGIC) or data[hsize:hsize + 8].tobytes() != _PNG_MAGIC:
        raise ImageConversionError(
            f"compressedDepth data ({data.size} bytes) is not a {hsize}-byte header followed by a PNG")
    _, quant_a, quant_b = _COMPRESSED_DEPTH_HEADER.unpack(data[:hsize].tobytes())
    img = cv2.imdecode(data[hsize:], cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 2 or img.dtype != np.uint16:
        raise ImageConversionError(f"compressedDepth PNG could not be decoded as 16-bit single-channel ({fmt!r})")
    if encoding == "16UC1":
        return img, encoding
    inv = img.astype(np.float32)
    with np.errstate(divide="ignore"):
        depth = np.float32(quant_a) / (inv - np.float32(quant_b))
    depth[img == 0] = np.nan
    return depth.astype(np.float32), encoding


def _encode_compressed_depth(depth: np.ndarray, depth_max: float, depth_quantization: float) -> tuple[str, bytes]:
    """(H, W) uint16 or float32 depth -> (format, header + PNG bytes) in compressedDepth layout."""
    if depth.ndim != 2 or depth.dtype not in (np.uint16, np.float32):
        raise ImageConversionError(
            f"compressedDepth needs (H, W) uint16 (16UC1) or float32 (32FC1) depth, got {depth.shape} {depth.dtype}")
    if depth.dtype == np.uint16:
        encoding, params, img = "16UC1", (0, 0.0, 0.0), depth
    else:
        quant_a = depth_quantization * (depth_quantization + 1.0)
        quant_b = 1.0 - quant_a / depth_max
        valid = np.isfinite(depth) & (depth > 0) & (depth < depth_max)
        inv = np.zeros(depth.shape, np.float64)
        inv[valid] = quant_a / depth[valid].astype(np.float64) + quant_b
        encoding, params, img = "32FC1", (0, quant_a, quant_b), np.clip(inv, 0, 65535).astype(np.uint16)
    ok, png = cv2.imencode(".png", np.ascontiguousarray(img))
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode a {depth.shape} depth image as PNG")
    return f"{encoding}; compressedDepth png", _COMPRESSED_DEPTH_HEADER.pack(*params) + png.tobytes()


def decode_compressed(msg: Any) -> tuple[np.ndarray, str]:
    """sensor_msgs/CompressedImage -> (array, encoding of the array).

    ``format`` may be a bare codec ("jpeg", "png") or image_transport's
    "<encoding>; <codec> compressed <target>" (e.g. "rgb8; jpeg compressed bgr8",
    "16UC1; png compressed"), or "<16UC1|32FC1>; compressedDepth [png]". The image is decoded with
    IMREAD_UNCHANGED (16-bit PNGs keep 16 bits, EXIF orientation is ignored). Colour images come out
    BGR(A) unless the format names an RGB(A) original encoding with the same channel count and depth,
    which is then restored. Raises ImageConversionError when the data cannot be decoded.
    """
    fmt = str(msg.format).strip()
    data = _as_bytes(msg.data, "CompressedImage")
    if data.size == 0:
        raise ImageConversionError(f"compressed image with format {fmt!r} has no data")
    if "compresseddepth" in fmt.lower():
        return _decode_compressed_depth(fmt, data)
    original = fmt.split(";")[0].strip() if ";" in fmt else ""
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageConversionError(
            f"compressed image data ({data.size} bytes, format {fmt!r}) could not be decoded by OpenCV")
    channels = 1 if img.ndim == 2 else img.shape[2]
    bits = img.dtype.itemsize * 8
    if channels == 1:
        encoding = "mono8" if bits == 8 else "mono16"
    elif channels in (3, 4):
        encoding = ("bgr" if channels == 3 else "bgra") + str(bits)
    else:
        raise ImageConversionError(f"compressed image decoded with {channels} channels ({fmt!r})")
    if original and original != encoding:
        try:
            o_dtype, o_channels, o_order, o_kind = _layout(original)
        except ImageConversionError:
            o_kind = None
        if o_kind == "plain" and o_channels == channels and o_dtype == img.dtype:
            if o_order in ("rgb", "rgba"):
                img = np.ascontiguousarray(img[:, :, [2, 1, 0, 3][:channels]])
            encoding = original  # same layout (or now reordered to it), e.g. 16UC1, 8UC1, rgb8
    return img, encoding


def compressed_to_numpy(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage -> (H, W) or (H, W, C) array; see :func:`decode_compressed`."""
    return decode_compressed(msg)[0]


def compressed_to_rgb_u8(msg: Any, scale16: str = "shift") -> np.ndarray:
    """sensor_msgs/CompressedImage -> (H, W, 3) uint8 RGB."""
    arr, encoding = decode_compressed(msg)
    return _array_to_rgb_u8(arr, channel_order(encoding), encoding, scale16)


def compressed_to_gray_u8(msg: Any, scale16: str = "shift") -> np.ndarray:
    """sensor_msgs/CompressedImage -> (H, W) uint8 grayscale (PIL 'L' weights)."""
    arr, encoding = decode_compressed(msg)
    return _array_to_gray_u8(arr, channel_order(encoding), encoding, scale16)


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def compressed_image_size(data: Any) -> tuple[int, int]:
    """(height, width) a PNG or JPEG (or compressedDepth PNG) declares in its header, read without
    decoding it. Raises ImageConversionError for other formats or a truncated header."""
    buf = _as_bytes(data, "CompressedImage").tobytes()
    hsize = _COMPRESSED_DEPTH_HEADER.size
    if buf[hsize:hsize + 8] == _PNG_MAGIC and buf[:8] != _PNG_MAGIC:
        buf = buf[hsize:]
    if buf[:8] == _PNG_MAGIC:
        if len(buf) < 24 or buf[12:16] != b"IHDR":
            raise ImageConversionError("PNG data is truncated before its IHDR header")
        width, height = struct.unpack(">II", buf[16:24])
        return int(height), int(width)
    if buf[:2] == b"\xff\xd8":
        i = 2
        while i + 4 <= len(buf):
            if buf[i] != 0xFF:
                raise ImageConversionError(f"JPEG data has no marker at byte {i}")
            marker = buf[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
                i += 2
                continue
            length = struct.unpack(">H", buf[i + 2:i + 4])[0]
            if marker in _JPEG_SOF:
                if i + 9 > len(buf):
                    break
                height, width = struct.unpack(">HH", buf[i + 5:i + 9])
                return int(height), int(width)
            i += 2 + length
        raise ImageConversionError("JPEG data has no frame header (SOF) with the image size")
    raise ImageConversionError("compressed image is neither PNG nor JPEG: its size cannot be read before decoding "
                               "(image_transport's compressed formats are jpeg and png)")


def decode_for_localization(msg: Any, max_pixels: int) -> np.ndarray:
    """Image or CompressedImage -> (H, W, 3) RGB or (H, W) gray uint8 (mono encodings skip the colour
    conversion), refusing a compressed image that declares more than ``max_pixels`` pixels before
    decoding it. Raises ImageConversionError naming the problem."""
    if _is_compressed(msg):
        h, w = compressed_image_size(msg.data)
        if h * w > max_pixels or h == 0 or w == 0:
            raise ImageConversionError(f"compressed image declares {w}x{h} px ({h * w} pixels); the limit is "
                                       f"{max_pixels} (max_input_pixels x 16): not decoded")
        return compressed_to_rgb_u8(msg)
    if channel_order(str(msg.encoding)) == "mono":
        return image_to_gray_u8(msg)
    return image_to_rgb_u8(msg)


def _is_compressed(msg: Any) -> bool:
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def to_rgb_u8(msg: Any, scale16: str = "shift") -> np.ndarray:
    """Image or CompressedImage -> (H, W, 3) uint8 RGB."""
    return compressed_to_rgb_u8(msg, scale16) if _is_compressed(msg) else image_to_rgb_u8(msg, scale16)


def to_gray_u8(msg: Any, scale16: str = "shift") -> np.ndarray:
    """Image or CompressedImage -> (H, W) uint8 grayscale (PIL 'L' weights)."""
    return compressed_to_gray_u8(msg, scale16) if _is_compressed(msg) else image_to_gray_u8(msg, scale16)


def to_depth_m(msg: Any) -> np.ndarray:
    """A depth Image or CompressedImage (compressedDepth, or a 16-bit PNG) -> (H, W) float32 metres,
    0 where unknown. REP-118 encodings: 16UC1/mono16 in millimetres, 32FC1 in metres (NaN, inf and
    values <= 0 become 0). Raises ImageConversionError for any other encoding."""
    if _is_compressed(msg):
        array, encoding = decode_compressed(msg)
    else:
        array, encoding = image_to_numpy(msg), str(msg.encoding)
    if encoding in ("16UC1", "mono16") and array.ndim == 2:
        depth = array.astype(np.float32) * np.float32(0.001)
    elif encoding == "32FC1" and array.ndim == 2:
        depth = array.astype(np.float32, copy=True)
    else:
        raise ImageConversionError(f"depth image encoding {encoding!r} with shape {array.shape}: expected 16UC1 "
                                   "(mm) or 32FC1 (m), single channel (REP 118)")
    depth[~np.isfinite(depth) | (depth <= 0)] = 0.0
    return depth


# --------------------------------------------------------------------------- numpy -> messages

def numpy_to_image(array: np.ndarray, encoding: str, header: Any = None, *, step: int | None = None,
                   is_bigendian: bool = False):
    """numpy array -> sensor_msgs/Image.

    Args:
        array: (H, W) or (H, W, C) matching ``encoding``'s element type and channel count (bayer: the
            (H, W) mosaic; yuv422/uyvy/yuyv: (H, W, 2) uint8 byte pairs).
        encoding: a ROS encoding string, e.g. "rgb8", "16UC1".
        header: std_msgs/Header to copy in (default: empty).
        step: row length in bytes; larger than a packed row pads each row with zeros.
        is_bigendian: write multi-byte elements big-endian.
    """
    from sensor_msgs.msg import Image

    dtype, channels, _, _ = _layout(encoding)
    array = np.asarray(array)
    expected = (channels,) if channels > 1 else ()
    if array.ndim not in (2, 3) or array.shape[2:] != expected or array.dtype.newbyteorder("=") != dtype:
        raise ImageConversionError(
            f"array for encoding {encoding!r} must be (H, W{', %d' % channels if channels > 1 else ''}) "
            f"{dtype}, got {array.shape} {array.dtype}")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ImageConversionError(f"zero-size image: {width}x{height} (width x height)")
    row_bytes = width * channels * dtype.itemsize
    step = row_bytes if step is None else int(step)
    if step < row_bytes:
        raise ImageConversionError(f"step {step} is smaller than a row of {row_bytes} bytes")
    big = bool(is_bigendian) and dtype.itemsize > 1
    packed = np.ascontiguousarray(array, dtype=dtype.newbyteorder(">" if big else "<"))
    rows = packed.reshape(height, -1).view(np.uint8)
    if step > row_bytes:
        padded = np.zeros((height, step), np.uint8)
        padded[:, :row_bytes] = rows
        rows = padded
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding = int(height), int(width), encoding
    msg.is_bigendian, msg.step = int(big), step
    msg.data = rows.tobytes()  # bytes, not an ndarray: assigning an ndarray is ~800x slower
    return msg


def numpy_to_compressed(array: np.ndarray, fmt: str = "jpeg", header: Any = None, *,
                        encoding: str | None = None, jpeg_quality: int = 95,
                        depth_max: float = 10.0, depth_quantization: float = 100.0):
    """numpy array -> sensor_msgs/CompressedImage, labelled the way image_transport does.

    Args:
        array: (H, W) uint8/uint16 or (H, W, 3|4) uint8 (uint16 for png).
        fmt: "jpeg", "png" or "compressedDepth" ((H, W) uint16 16UC1 depth stored exactly, or
            (H, W) float32 32FC1 metres quantised as inverse depth with ``depth_max`` and
            ``depth_quantization``, as compressed_depth_image_transport does; PNG inside).
        header: std_msgs/Header to copy in.
        encoding: the array's encoding (default mono8/mono16/bgr8/bgra8/bgr16/bgra16 by shape and
            dtype); an RGB(A) encoding is converted to BGR(A) for OpenCV, and recorded in ``format``
            (e.g. "rgb8; jpeg compressed bgr8") so :func:`decode_compressed` restores it.
        jpeg_quality: 0-100.
        depth_max, depth_quantization: the 32FC1 compressedDepth quantisation parameters.
    """
    from sensor_msgs.msg import CompressedImage

    array = np.asarray(array)
    if fmt not in ("jpeg", "png", "compressedDepth"):
        raise ImageConversionError(f"fmt must be 'jpeg', 'png' or 'compressedDepth', got {fmt!r}")
    if array.ndim not in (2, 3) or array.shape[0] == 0 or array.shape[1] == 0 or (
            array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageConversionError(f"array must be non-empty (H, W) or (H, W, 3|4), got {array.shape}")
    if fmt == "compressedDepth":
        msg = CompressedImage()
        if header is not None:
            msg.header = header
        msg.format, msg.data = _encode_compressed_depth(array, depth_max, depth_quantization)
        return msg
    if array.dtype not in (np.uint8, np.uint16) or (fmt == "jpeg" and array.dtype != np.uint8):
        raise ImageConversionError(f"{fmt} cannot store {array.dtype} pixels")
    bits = array.dtype.itemsize * 8
    if encoding is None:
        encoding = ("mono" if array.ndim == 2 else "bgr" if array.shape[2] == 3 else "bgra") + str(bits)
    e_dtype, e_channels, order, e_kind = _layout(encoding)
    channels = 1 if array.ndim == 2 else array.shape[2]
    if e_kind != "plain" or e_channels != channels or e_dtype != array.dtype.newbyteorder("="):
        raise ImageConversionError(
            f"encoding {encoding!r} does not describe a {array.shape} {array.dtype} array")
    if order in ("rgb", "rgba"):
        array = array[:, :, [2, 1, 0, 3][:channels]]
    ext, params = (".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]) if fmt == "jpeg" else (".png", [])
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(array), params)
    if not ok:
        raise ImageConversionError(f"OpenCV could not encode a {array.shape} {array.dtype} image as {fmt}")
    target = ("mono" if channels == 1 else "bgr" if channels == 3 else "bgra") + str(bits)
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = f"{encoding}; {fmt} compressed {target}"
    msg.data = buf.tobytes()
    return msg
