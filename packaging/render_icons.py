"""Render resources/hearth.svg into the icon files the desktops want; run after editing the SVG.

    .venv/bin/python packaging/render_icons.py

Writes resources/hearth-<size>.png (Linux icon themes, the window icon at small sizes where an
SVG renders blurry), packaging/windows/hearth.ico and packaging/macos/hearth.icns. The outputs
are committed, so building a bundle needs no renderer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# A build tool, not part of the core: Qt renders the SVG as the app will show it.
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt  # noqa: TID251
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: TID251
from PySide6.QtSvg import QSvgRenderer  # noqa: TID251

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "resources" / "hearth.svg"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 256)


def render(renderer: QSvgRenderer, size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def png_bytes(image: QImage) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data.data())


def ico(images: list[QImage]) -> bytes:
    """An ICO file of PNG-compressed images (Windows Vista and later read them)."""
    header = (0).to_bytes(2, "little") + (1).to_bytes(2, "little")
    header += len(images).to_bytes(2, "little")
    entries = b""
    blobs = [png_bytes(i) for i in images]
    offset = 6 + 16 * len(images)
    for image, blob in zip(images, blobs, strict=True):
        side = image.width() if image.width() < 256 else 0  # 0 means 256
        entries += bytes([side, side, 0, 0]) + (1).to_bytes(2, "little")
        entries += (32).to_bytes(2, "little") + len(blob).to_bytes(4, "little")
        entries += offset.to_bytes(4, "little")
        offset += len(blob)
    return header + entries + b"".join(blobs)


def icns(images: dict[int, QImage]) -> bytes:
    """An ICNS file of PNG images (the types macOS 10.7 and later read)."""
    types = {16: b"icp4", 32: b"icp5", 64: b"icp6", 128: b"ic07", 256: b"ic08", 512: b"ic09"}
    body = b""
    for size, kind in types.items():
        blob = png_bytes(images[size])
        body += kind + (8 + len(blob)).to_bytes(4, "big") + blob
    return b"icns" + (8 + len(body)).to_bytes(4, "big") + body


def main() -> int:
    _app = QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        print(f"render_icons: {SVG} is not a valid SVG", file=sys.stderr)
        return 1
    images = {size: render(renderer, size) for size in PNG_SIZES}
    for size, image in images.items():
        (ROOT / "resources" / f"hearth-{size}.png").write_bytes(png_bytes(image))
    (ROOT / "packaging" / "windows" / "hearth.ico").write_bytes(ico([images[s] for s in ICO_SIZES]))
    (ROOT / "packaging" / "macos" / "hearth.icns").write_bytes(icns(images))
    print(f"render_icons: {len(images)} PNG sizes, hearth.ico and hearth.icns written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
