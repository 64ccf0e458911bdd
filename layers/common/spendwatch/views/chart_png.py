"""PNG rendering of a chart layout with Pillow, for the digest's picture (Slack upload, e-mail inline image).

Only the digest function imports this module (Pillow ships in that function's own artifact, not in the
CommonLayer), so the poller, alerter and watchdog never pay for it. The layout comes from
`spendwatch.views.chart`, the same one the HTML report draws as SVG. The picture is drawn at twice its nominal
size so it stays sharp on high-density screens; text uses the FreeType font bundled in Pillow's wheels
(no system font is needed on Lambda). Choice of Pillow over matplotlib: docs/performance.md, "Chart".
"""

from __future__ import annotations

import io
from functools import cache
from typing import TYPE_CHECKING

from spendwatch.views.chart import Layout, Line, Rect, Text

if TYPE_CHECKING:
    from PIL import ImageDraw, ImageFont

SCALE = 2
DASH = (6, 4)


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont  # noqa: PLC0415 - imported on the first picture, never by the other functions

    return ImageFont.load_default(size=size)


def _dashed(draw: ImageDraw.ImageDraw, coords: tuple[float, float, float, float], color: str, width: int) -> None:
    """An axis-parallel dashed line (Pillow draws only solid ones)."""
    x1, y1, x2, y2 = coords
    length = abs(x2 - x1) + abs(y2 - y1)
    on, off = DASH[0] * SCALE, DASH[1] * SCALE
    position = 0.0
    while position < length:
        end = min(position + on, length)
        if y1 == y2:
            step = 1 if x2 >= x1 else -1
            draw.line([(x1 + step * position, y1), (x1 + step * end, y2)], fill=color, width=width)
        else:
            step = 1 if y2 >= y1 else -1
            draw.line([(x1, y1 + step * position), (x2, y1 + step * end)], fill=color, width=width)
        position = end + off


def render_png(layout: Layout) -> bytes:
    """The layout as an optimized 8-bit PNG (a few tens of KB)."""
    from PIL import Image, ImageDraw  # noqa: PLC0415

    image = Image.new("RGB", (layout.width * SCALE, layout.height * SCALE), "#ffffff")
    draw = ImageDraw.Draw(image)
    for shape in layout.shapes:
        if isinstance(shape, Rect):
            box = (
                round(shape.x * SCALE),
                round(shape.y * SCALE),
                round((shape.x + shape.w) * SCALE) - 1,
                round((shape.y + shape.h) * SCALE) - 1,
            )
            if box[2] < box[0] or box[3] < box[1]:
                continue
            draw.rectangle(box, fill=shape.fill)
            if shape.stroke and shape.dashed:
                x1, y1, x2, y2 = box
                for edge in ((x1, y1, x2, y1), (x2, y1, x2, y2), (x1, y2, x2, y2), (x1, y1, x1, y2)):
                    _dashed(draw, edge, shape.stroke, SCALE)
            elif shape.stroke:
                draw.rectangle(box, outline=shape.stroke, width=SCALE)
        elif isinstance(shape, Line):
            width = max(1, round(shape.width * SCALE))
            coords = (shape.x1 * SCALE, shape.y1 * SCALE, shape.x2 * SCALE, shape.y2 * SCALE)
            if shape.dashed:
                _dashed(draw, coords, shape.color, width)
            else:
                draw.line([coords[:2], coords[2:]], fill=shape.color, width=width)
        else:
            _text(draw, shape)
    # A chart has a handful of flat colours: a 64-colour palette image is ~2.5x smaller than RGB with no
    # visible loss (text edges keep enough grey levels). Fast octree quantization and no `optimize` pass:
    # median cut took ~250 ms more, `optimize` ~70 ms more for 3 KB less (bench/chart.py).
    quantized = image.quantize(colors=64, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    quantized.save(out, format="PNG")
    return out.getvalue()


def _text(draw: ImageDraw.ImageDraw, shape: Text) -> None:
    anchor = {"start": "ls", "middle": "ms", "end": "rs"}[shape.anchor]
    draw.text(
        (shape.x * SCALE, shape.y * SCALE),
        shape.text,
        fill=shape.color,
        font=_font(round(shape.size * SCALE)),
        anchor=anchor,
        stroke_width=1 if shape.bold else 0,
        stroke_fill=shape.color,
    )
