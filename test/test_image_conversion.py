"""glace_ros.image_conversion on real sensor_msgs messages: layouts, encodings, codecs and errors."""
from __future__ import annotations

import struct
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from glace_ros.image_conversion import (
    ImageConversionError, channel_order, compressed_to_gray_u8, compressed_to_numpy, compressed_to_rgb_u8,
    decode_compressed, image_to_gray_u8, image_to_numpy, image_to_rgb_u8, numpy_to_compressed, numpy_to_image,
    rgb_to_gray_u8, to_gray_u8, to_rgb_u8)

RNG_SEED = 7
H, W = 5, 7  # odd width: packed rows are not 4-byte aligned

PLAIN = {  # encoding -> (dtype, channels)
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1), "mono16": (np.uint16, 1), "rgb16": (np.uint16, 3), "8UC1": (np.uint8, 1),
    "8UC3": (np.uint8, 3), "8UC4": (np.uint8, 4), "16UC1": (np.uint16, 1), "16SC1": (np.int16, 1),
    "32SC1": (np.int32, 1), "32FC1": (np.float32, 1), "64FC1": (np.float64, 1), "32FC3": (np.float32, 3),
}


def _random(dtype, channels, rng, h=H, w=W):
    shape = (h, w) if channels == 1 else (h, w, channels)
    if np.issubdtype(dtype, np.floating):
        return rng.normal(0, 100, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def _raw_image(encoding, height, width, step, data, bigendian=0):
    msg = Image()
    msg.height, msg.width, msg.encoding, msg.step, msg.is_bigendian = height, width, encoding, step, bigendian
    msg.data = bytes(data)
    return msg


@pytest.mark.parametrize("encoding", sorted(PLAIN))
@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("bigendian", [False, True])
def test_round_trip_every_plain_encoding(encoding, pad, bigendian):
    dtype, channels = PLAIN[encoding]
    arr = _random(dtype, channels, np.random.default_rng(RNG_SEED))
    row = W * channels * np.dtype(dtype).itemsize
    msg = numpy_to_image(arr, encoding, step=row + pad, is_bigendian=bigendian)
    assert msg.step == row + pad and len(msg.data) == (row + pad) * H
    assert msg.is_bigendian == int(bigendian and np.dtype(dtype).itemsize > 1)
    out = image_to_numpy(msg)
    assert out.dtype == dtype and out.shape == arr.shape
    np.testing.assert_array_equal(out, arr)
    assert out.flags["C_CONTIGUOUS"] and out.flags["WRITEABLE"] and out.dtype.isnative


def test_result_is_a_copy_not_a_view_of_the_message():
    msg = numpy_to_image(np.full((2, 3), 9, np.uint8), "mono8")
    out = image_to_numpy(msg)
    out[:] = 0
    assert bytes(msg.data) == bytes([9] * 6)


def test_padded_step_ignores_padding_bytes_and_big_endian_is_read_from_bytes():
    # 16UC1, width 3, step 8 (2 padding bytes per row filled with 0xEE), written by hand.
    rows = [[0x12, 0x34, 0xFF, 0xFF, 0x00, 0x01, 0xEE, 0xEE], [0xAB, 0xCD, 0x00, 0x00, 0x80, 0x00, 0xEE, 0xEE]]
    data = [b for r in rows for b in r]
    big = image_to_numpy(_raw_image("16UC1", 2, 3, 8, data, bigendian=1))
    np.testing.assert_array_equal(big, [[0x1234, 0xFFFF, 0x0001], [0xABCD, 0x0000, 0x8000]])
    little = image_to_numpy(_raw_image("16UC1", 2, 3, 8, data, bigendian=0))
    np.testing.assert_array_equal(little, [[0x3412, 0xFFFF, 0x0100], [0xCDAB, 0x0000, 0x0080]])
    # odd step with 16-bit elements: rows start at unaligned offsets
    odd = image_to_numpy(_raw_image("mono16", 2, 1, 3, [1, 2, 99, 3, 4, 99]))
    np.testing.assert_array_equal(odd, [[0x0201], [0x0403]])


def test_big_endian_float_from_bytes():
    data = struct.pack(">ff", 1.5, -2.25)
    np.testing.assert_array_equal(image_to_numpy(_raw_image("32FC1", 1, 2, 8, data, bigendian=1)), [[1.5, -2.25]])


def test_16uc1_keeps_full_16_bit_values():
    depth = np.array([[0, 1, 255, 256], [1000, 4095, 40000, 65535]], np.uint16)
    out = image_to_numpy(numpy_to_image(depth, "16UC1"))
    assert out.dtype == np.uint16 and out.max() == 65535
    np.testing.assert_array_equal(out, depth)


def test_bgr_and_rgb_channel_order():
    bgr = _raw_image("bgr8", 1, 1, 3, [10, 20, 30])
    np.testing.assert_array_equal(image_to_numpy(bgr)[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(image_to_rgb_u8(bgr)[0, 0], [30, 20, 10])
    rgb = _raw_image("rgb8", 1, 1, 3, [10, 20, 30])
    np.testing.assert_array_equal(image_to_rgb_u8(rgb)[0, 0], [10, 20, 30])
    bgra = _raw_image("bgra8", 1, 1, 4, [10, 20, 30, 40])
    np.testing.assert_array_equal(image_to_rgb_u8(bgra)[0, 0], [30, 20, 10])
    mono = _raw_image("mono8", 1, 1, 1, [77])
    np.testing.assert_array_equal(image_to_rgb_u8(mono)[0, 0], [77, 77, 77])
    assert channel_order("bgr8") == "bgr" and channel_order("8UC3") == "bgr" and channel_order("rgba16") == "rgba"


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_gray_matches_pil_l_exactly(encoding):
    rng = np.random.default_rng(RNG_SEED)
    rgb = rng.integers(0, 256, (31, 33, 3), dtype=np.uint8)
    rgb[0, :4] = [[255, 255, 255], [0, 0, 0], [255, 0, 0], [1, 2, 3]]
    expected = np.asarray(PILImage.fromarray(rgb).convert("L"))
    arr = {"rgb8": rgb, "bgr8": rgb[..., ::-1],
           "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 5, np.uint8)]),
           "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 5, np.uint8)])}[encoding]
    gray = image_to_gray_u8(numpy_to_image(np.ascontiguousarray(arr), encoding, step=33 * arr.shape[2] + 1))
    assert gray.dtype == np.uint8 and gray.shape == (31, 33)
    np.testing.assert_array_equal(gray, expected)
    np.testing.assert_array_equal(rgb_to_gray_u8(rgb), expected)


def test_mono16_to_gray_shift_and_max():
    img = np.array([[0, 255, 256, 65535], [1023, 512, 4095, 32768]], np.uint16)
    msg = numpy_to_image(img, "mono16")
    np.testing.assert_array_equal(image_to_gray_u8(msg), img >> 8)
    scaled = image_to_gray_u8(msg, scale16="max")
    np.testing.assert_array_equal(scaled, np.round(img.astype(np.float64) * 255 / 65535).astype(np.uint8))
    ten_bit = numpy_to_image(np.array([[0, 1023]], np.uint16), "mono16")
    np.testing.assert_array_equal(image_to_gray_u8(ten_bit, scale16="max"), [[0, 255]])
    np.testing.assert_array_equal(image_to_rgb_u8(ten_bit)[0, 1], [3, 3, 3])  # 1023 >> 8
    with pytest.raises(ValueError, match="scale16"):
        image_to_gray_u8(msg, scale16="gamma")


def _mosaic(rgb, pattern):
    """(H, W, 3) -> (H, W) Bayer mosaic whose top-left 2x2 is ``pattern`` (e.g. 'rggb')."""
    idx = {"r": 0, "g": 1, "b": 2}
    out = np.zeros(rgb.shape[:2], rgb.dtype)
    for k, ch in enumerate(pattern):
        dy, dx = divmod(k, 2)
        out[dy::2, dx::2] = rgb[dy::2, dx::2, idx[ch]]
    return out


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_demosaic_reproduces_a_constant_colour(pattern, bits):
    dtype = np.uint8 if bits == 8 else np.uint16
    colour = np.array([200, 90, 20], np.int64) * (1 if bits == 8 else 257)
    rgb = np.broadcast_to(colour.astype(dtype), (8, 10, 3)).copy()
    msg = numpy_to_image(_mosaic(rgb, pattern), f"bayer_{pattern}{bits}", step=10 * bits // 8 + 2)
    out = image_to_numpy(msg)
    assert out.shape == (8, 10, 3) and out.dtype == dtype
    np.testing.assert_array_equal(out[2:-2, 2:-2], rgb[2:-2, 2:-2])  # interior: no border effects
    if bits == 8:
        np.testing.assert_array_equal(image_to_gray_u8(msg)[4, 4], rgb_to_gray_u8(rgb)[4, 4])


def test_yuv422_byte_orders_from_hand_written_bytes():
    # two pixels sharing neutral chroma: Y0 = 50 (dark), Y1 = 200 (bright)
    uyvy = _raw_image("uyvy", 1, 2, 4, [128, 50, 128, 200])
    yuyv = _raw_image("yuyv", 1, 2, 4, [50, 128, 200, 128])
    for msg in (uyvy, yuyv, _raw_image("yuv422", 1, 2, 4, [128, 50, 128, 200]),
                _raw_image("yuv422_yuy2", 1, 2, 4, [50, 128, 200, 128])):
        rgb = image_to_numpy(msg)
        assert rgb.shape == (1, 2, 3) and rgb.dtype == np.uint8
        assert np.ptp(rgb[0, 0].astype(int)) <= 1 and np.ptp(rgb[0, 1].astype(int)) <= 1  # neutral gray
        assert rgb[0, 0, 0] + 80 < rgb[0, 1, 0]  # dark then bright: the byte order was honoured
    colour = np.full((4, 6, 3), (200, 50, 20), np.uint8)
    packed = cv2.cvtColor(colour, cv2.COLOR_RGB2YUV_UYVY)
    np.testing.assert_allclose(image_to_rgb_u8(numpy_to_image(packed, "uyvy")).astype(int), colour, atol=3)


def test_compressed_png_is_exact_and_restores_channel_order():
    rng = np.random.default_rng(RNG_SEED)
    rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    for arr, enc in [(rgb, "rgb8"), (rgb, "bgr8"), (rgb[..., 0].copy(), "mono8"),
                     (np.dstack([rgb, rgb[..., :1]]), "rgba8")]:
        msg = numpy_to_compressed(arr, "png", encoding=enc)
        out, out_enc = decode_compressed(msg)
        assert out_enc == enc, msg.format
        np.testing.assert_array_equal(out, arr)
    np.testing.assert_array_equal(compressed_to_rgb_u8(numpy_to_compressed(rgb, "png", encoding="bgr8")),
                                  rgb[..., ::-1])


def test_compressed_png_16_bit_keeps_full_range():
    depth = np.array([[0, 1, 300, 65535], [40000, 12345, 2, 999]], np.uint16)
    for enc in ("16UC1", "mono16"):
        msg = numpy_to_compressed(depth, "png", encoding=enc)
        out, out_enc = decode_compressed(msg)
        assert out.dtype == np.uint16 and out_enc == enc
        np.testing.assert_array_equal(out, depth)


def test_compressed_jpeg_round_trip_keeps_colours():
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :16] = (220, 30, 30)
    rgb[:, 16:32] = (30, 220, 30)
    rgb[:, 32:] = (30, 30, 220)
    msg = numpy_to_compressed(rgb, "jpeg", encoding="rgb8", jpeg_quality=95)
    assert msg.format == "rgb8; jpeg compressed bgr8"
    out = compressed_to_rgb_u8(msg)
    err = np.abs(out.astype(int) - rgb)
    assert np.median(err) <= 2 and err[:, 4:12].max() <= 4 and err[:, 36:44].max() <= 4  # block interiors
    assert out[16, 4, 0] > 200 and out[16, 20, 1] > 200 and out[16, 40, 2] > 200
    gray = compressed_to_gray_u8(msg)
    assert np.median(np.abs(gray.astype(int) - rgb_to_gray_u8(rgb))) <= 2


@pytest.mark.parametrize("fmt", ["jpeg", "png", "rgb8; jpeg compressed bgr8", "bgr8; png compressed bgr8",
                                 "16UC1; png compressed", "mono8; jpeg compressed mono8"])
def test_format_strings_written_by_other_publishers(fmt):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = (250, 10, 10)  # red left half
    msg = CompressedImage()
    msg.format = fmt
    if "16UC1" in fmt:
        depth = np.arange(256, dtype=np.uint16).reshape(16, 16) * 250
        msg.data = cv2.imencode(".png", depth)[1].tobytes()
        out, enc = decode_compressed(msg)
        assert enc == "16UC1"
        np.testing.assert_array_equal(out, depth)
        return
    if fmt.startswith("mono8"):
        msg.data = cv2.imencode(".jpg", rgb[..., 0])[1].tobytes()
        out, enc = decode_compressed(msg)
        assert enc == "mono8" and out.ndim == 2 and out[0, 0] > 240
        return
    ext = ".png" if "png" in fmt else ".jpg"
    msg.data = cv2.imencode(ext, rgb[..., ::-1])[1].tobytes()  # OpenCV writes BGR input
    out, enc = decode_compressed(msg)
    assert enc == ("rgb8" if fmt.startswith("rgb8") else "bgr8")
    red = to_rgb_u8(msg)[8, 2]
    assert red[0] > 240 and red[1] < 20 and red[2] < 20


def test_compressed_depth_16uc1_exact_and_32fc1_quantised():
    depth16 = np.array([[0, 1, 65535], [500, 1500, 12000]], np.uint16)
    msg = numpy_to_compressed(depth16, "compressedDepth")
    assert msg.format == "16UC1; compressedDepth png"
    np.testing.assert_array_equal(compressed_to_numpy(msg), depth16)
    depth = np.array([[0.5, 1.0, 2.5], [9.0, np.nan, 15.0]], np.float32)  # 15 m > depth_max = 10 m
    out, enc = decode_compressed(numpy_to_compressed(depth, "compressedDepth"))
    assert enc == "32FC1" and out.dtype == np.float32
    valid = np.isfinite(depth) & (depth < 10)
    np.testing.assert_allclose(out[valid], depth[valid], rtol=0.01)
    assert np.isnan(out[~valid]).all()


def test_compressed_depth_layout_written_by_hand():
    # 12-byte header (int32 format, float32 quantA, float32 quantB), then a PNG of inverse depth
    quant_a, quant_b = 100.0 * 101.0, 1.0 - 100.0 * 101.0 / 10.0
    inv = np.array([[0, 2000, 5000]], np.uint16)
    msg = CompressedImage()
    msg.format = "32FC1; compressedDepth"
    msg.data = struct.pack("<iff", 0, quant_a, quant_b) + cv2.imencode(".png", inv)[1].tobytes()
    out = compressed_to_numpy(msg)
    assert np.isnan(out[0, 0])
    np.testing.assert_allclose(out[0, 1:], np.float32(quant_a) / (inv[0, 1:] - np.float32(quant_b)), rtol=1e-6)


def test_serialization_round_trip_of_produced_messages():
    rng = np.random.default_rng(RNG_SEED)
    arr = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    msg = numpy_to_image(arr, "16UC1", header, step=2 * W + 2, is_bigendian=True)
    back = deserialize_message(serialize_message(msg), Image)
    assert back.header.frame_id == "camera_optical" and back.header.stamp.nanosec == 345
    np.testing.assert_array_equal(image_to_numpy(back), arr)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    cmsg = numpy_to_compressed(rgb, "png", header, encoding="rgb8")
    cback = deserialize_message(serialize_message(cmsg), CompressedImage)
    assert cback.format == cmsg.format
    np.testing.assert_array_equal(compressed_to_numpy(cback), rgb)


def test_duck_typed_message_with_numpy_data_like_rosbags():
    arr = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    msg = SimpleNamespace(height=2, width=2, encoding="rgb8", is_bigendian=0, step=6, data=arr.reshape(-1).copy())
    np.testing.assert_array_equal(image_to_numpy(msg), arr)
    np.testing.assert_array_equal(to_gray_u8(msg), rgb_to_gray_u8(arr))
    cmsg = SimpleNamespace(format="png", data=np.frombuffer(cv2.imencode(".png", arr)[1].tobytes(), np.uint8))
    np.testing.assert_array_equal(to_rgb_u8(cmsg), arr[..., ::-1])


@pytest.mark.parametrize("msg, match", [
    (_raw_image("rgb9", 2, 2, 6, [0] * 12), "unknown image encoding 'rgb9'"),
    (_raw_image("8UC5", 2, 2, 10, [0] * 20), "unknown image encoding"),
    (_raw_image("rgb8", 2, 2, 6, [0] * 11), r"holds 11 bytes, expected step\*height = 6\*2 = 12"),
    (_raw_image("rgb8", 2, 2, 5, [0] * 10), "step 5 is smaller than a row: width 2 x 3 channel"),
    (_raw_image("mono16", 2, 3, 5, [0] * 10), "step 5 is smaller than a row"),
    (_raw_image("mono8", 0, 4, 4, []), "zero-size image"),
    (_raw_image("mono8", 3, 0, 0, []), "zero-size image"),
    (_raw_image("uyvy", 1, 3, 6, [0] * 6), "width must be even"),
])
def test_bad_images_raise_named_errors(msg, match):
    with pytest.raises(ImageConversionError, match=match):
        image_to_numpy(msg)
    assert issubclass(ImageConversionError, ValueError)


def test_bad_compressed_and_unconvertible_inputs_raise():
    msg = CompressedImage()
    msg.format = "jpeg"
    msg.data = b"this is not a jpeg"
    with pytest.raises(ImageConversionError, match="could not be decoded"):
        compressed_to_numpy(msg)
    msg.data = b""
    with pytest.raises(ImageConversionError, match="no data"):
        compressed_to_numpy(msg)
    msg.format, msg.data = "16UC1; compressedDepth png", b"\x00" * 40
    with pytest.raises(ImageConversionError, match="12-byte header followed by a PNG"):
        compressed_to_numpy(msg)
    with pytest.raises(ImageConversionError, match="no intensity scale"):
        image_to_gray_u8(numpy_to_image(np.zeros((2, 2), np.float32), "32FC1"))
    with pytest.raises(ImageConversionError, match=r"must be \(H, W, 3\) uint8, got \(2, 2\) uint16"):
        numpy_to_image(np.zeros((2, 2), np.uint16), "rgb8")
    with pytest.raises(ImageConversionError, match="zero-size"):
        numpy_to_image(np.zeros((0, 2), np.uint8), "mono8")
    with pytest.raises(ImageConversionError, match="jpeg cannot store uint16"):
        numpy_to_compressed(np.zeros((2, 2), np.uint16), "jpeg")
    with pytest.raises(ImageConversionError, match="does not describe"):
        numpy_to_compressed(np.zeros((2, 2, 3), np.uint8), "png", encoding="mono8")


def test_compressed_size_is_read_from_the_header_before_decoding():
    import zlib

    from glace_ros.image_conversion import compressed_image_size, decode_for_localization

    for ext in (".png", ".jpg"):
        ok, data = cv2.imencode(ext, np.zeros((37, 53, 3), np.uint8))
        assert compressed_image_size(data.tobytes()) == (37, 53)
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    assert compressed_image_size(png) == (20000, 20000)
    with pytest.raises(ImageConversionError, match="20000x20000"):
        decode_for_localization(CompressedImage(format="png", data=png), 10_000_000)
    with pytest.raises(ImageConversionError, match="neither PNG nor JPEG"):
        compressed_image_size(b"GIF89a" + b"\0" * 20)
    with pytest.raises(ImageConversionError, match="truncated"):
        compressed_image_size(png[:20])
