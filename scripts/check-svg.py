#!/usr/bin/env python3
"""Checks that each FILE is an SVG image a browser will draw: it parses as
XML, its root is `svg` in the SVG namespace, it has a size (width and
height, or a viewBox) and it draws something (a shape or text beyond a
background rectangle covering the whole canvas).

    scripts/check-svg.py results/*.svg

Prints one line per bad file and exits 1 if any is bad, 0 if all are good,
2 for no arguments. Standard library only, so CI needs nothing installed;
it checks structure, not how the picture looks (rendering would need a
rasteriser such as rsvg-convert, which CI does not have).
"""

import re
import sys
import xml.etree.ElementTree as ET

SVG_NS = "http://www.w3.org/2000/svg"
GRAPHICS = {"path", "line", "polyline", "polygon", "rect", "circle", "ellipse", "text", "image", "use"}
LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(px|pt|pc|mm|cm|in|em|ex|%)?\s*$")


def length(text):
    """The number in an SVG length ("800", "800px"), or None."""
    m = LENGTH.match(text or "")
    return float(m.group(1)) if m else None


def local(tag):
    return tag.rsplit("}", 1)[-1]


def problem(path):
    """What is wrong with the file at `path`, or None."""
    try:
        root = ET.parse(path).getroot()
    except OSError as e:
        return f"cannot read: {e.strerror}"
    except ET.ParseError as e:
        return f"not well-formed XML: {e}"
    if root.tag != f"{{{SVG_NS}}}svg":
        return f"root element is {root.tag!r}, not svg in the {SVG_NS} namespace"

    width, height = length(root.get("width")), length(root.get("height"))
    size = None
    if width and height:
        size = (width, height)
    box = root.get("viewBox")
    if box is not None:
        parts = re.split(r"[\s,]+", box.strip())
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            return f"viewBox {box!r} is not four numbers"
        if len(numbers) != 4 or numbers[2] <= 0 or numbers[3] <= 0:
            return f"viewBox {box!r} is not four numbers with a positive width and height"
        size = size or (numbers[2], numbers[3])
    if size is None:
        return "no size: neither width and height nor a viewBox"

    drawn = 0
    for el in root.iter():
        if not el.tag.startswith(f"{{{SVG_NS}}}") or local(el.tag) not in GRAPHICS:
            continue
        if local(el.tag) == "text" and not "".join(el.itertext()).strip():
            continue
        if local(el.tag) == "rect" and is_background(el, size):
            continue
        drawn += 1
    if drawn == 0:
        return "draws nothing (no shape or text beyond a background)"
    return None


def is_background(rect, size):
    x, y = length(rect.get("x", "0")), length(rect.get("y", "0"))
    w, h = length(rect.get("width")), length(rect.get("height"))
    return x == 0 and y == 0 and w is not None and h is not None and w >= size[0] and h >= size[1]


def main(argv):
    if not argv:
        print("usage: check-svg.py FILE...", file=sys.stderr)
        return 2
    bad = 0
    for path in argv:
        why = problem(path)
        if why:
            print(f"{path}: {why}")
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
