"""Bounds on hostile inputs: every read is checked against what the input declares before it happens.

A leaf module (it imports nothing from ``validator`` but the error types), used by the image decoder, the
policy and class-list readers and the model safe-load scan. Each limit, and why (README "Limits on inputs"):

- ``MAX_IMAGE_PIXELS`` 178,956,970 (``CAMGATE_MAX_IMAGE_PIXELS``): Pillow's own decompression-bomb error
  threshold (2 x ``PIL.Image.MAX_IMAGE_PIXELS``), above every camera sensor sold (150 MP); an 8-bit RGB image
  of that size decodes to 512 MiB. Checked on the header's width x height before any pixel is decoded.
- ``MAX_IMAGE_BYTES`` 512 MiB (``CAMGATE_MAX_IMAGE_BYTES``): an uncompressed 8-bit RGB file at the pixel
  limit (178,956,970 x 3 bytes); checked on the file's size before it is read.
- ``MAX_YAML_NODES`` 100,000 nodes, aliases expanded: a policy is a few hundred nodes, an ImageNet-21k class
  list 21,841; a YAML alias bomb ("billion laughs") expands to 10^9.
- ``MAX_TEXT_BYTES`` 16 MiB: a policy or class list file (both are read whole, then parsed).
- ``MAX_CONFIG_BYTES`` 64 MiB: the ``config.json`` of a ``.keras`` zip, uncompressed (EfficientNetB7's is
  0.76 MB); the same bound as a Keras model JSON in a folder.
- ``MAX_ANNOTATION_BYTES`` 2 GiB (``CAMGATE_MAX_ANNOTATION_BYTES``): a COCO JSON is parsed whole, at about 8x
  its size in memory; COCO's train2017 instances file is 448 MB and LVIS's 1.1 GB. A VOC XML is one image's:
  ``MAX_TEXT_BYTES``. Both checked on the file's size before it is read.
- ``MAX_ZIP_RATIO`` 200 for a ``.keras`` zip entry over 1 MiB: Keras stores its entries uncompressed (ratio
  1); a deflated Keras config compresses 40-52x (ResNet50, EfficientNetB7, ConvNeXtXLarge), float weights
  about 1.1x; a run of zeros deflates 1,030x.
"""

from __future__ import annotations

import os

from validator.errors import UsageError

MAX_IMAGE_PIXELS = 178_956_970
MAX_IMAGE_BYTES = 512 << 20
MAX_YAML_NODES = 100_000
MAX_TEXT_BYTES = 16 << 20
MAX_CONFIG_BYTES = 64 << 20
MAX_ZIP_RATIO = 200
MAX_ANNOTATION_BYTES = 2 << 30
ZIP_RATIO_MIN_BYTES = 1 << 20  # smaller entries cannot hurt, whatever their ratio

PIXELS_ENV = "CAMGATE_MAX_IMAGE_PIXELS"
BYTES_ENV = "CAMGATE_MAX_IMAGE_BYTES"
ANNOTATION_BYTES_ENV = "CAMGATE_MAX_ANNOTATION_BYTES"


def _from_env(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise UsageError(f"{name} must be a positive whole number, got {text!r}")
    return value


def image_pixel_limit() -> int:
    """The most pixels (width x height) an image may declare: ``$CAMGATE_MAX_IMAGE_PIXELS`` or the default."""
    return _from_env(PIXELS_ENV, MAX_IMAGE_PIXELS)


def image_byte_limit() -> int:
    """The largest image file read: ``$CAMGATE_MAX_IMAGE_BYTES`` or the default."""
    return _from_env(BYTES_ENV, MAX_IMAGE_BYTES)


def annotation_byte_limit() -> int:
    """The largest COCO JSON read: ``$CAMGATE_MAX_ANNOTATION_BYTES`` or the default."""
    return _from_env(ANNOTATION_BYTES_ENV, MAX_ANNOTATION_BYTES)


def refuse_larger_than(path, limit: int, what: str, hint: str = "", error=UsageError) -> None:
    """``error`` when the file at ``path`` is over ``limit`` bytes by its size (checked before it is read)."""
    import os as _os

    size = _os.stat(path).st_size
    if size > limit:
        raise error(f"{what}: the file is {fmt_bytes(size)}, over the {fmt_bytes(limit)} limit for it{hint}; "
                    "refused unread")


def yaml_nodes_within(root, limit: int = MAX_YAML_NODES) -> bool:
    """Whether the composed YAML node ``root`` holds at most ``limit`` nodes with every alias expanded (an alias
    counts as often as it is used, as a reader of the loaded data would walk it). Stops at ``limit`` + 1 nodes,
    so a bomb costs no more than a document at the limit."""
    import yaml

    count, stack = 0, [root]
    while stack:
        node = stack.pop()
        count += 1
        if count > limit:
            return False
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append(key)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return True


def load_yaml_bounded(text: str, what: str, error=UsageError):
    """``yaml.safe_load(text)`` after refusing a document over ``MAX_YAML_NODES`` (aliases expanded) with
    ``error``, naming ``what``. YAML syntax errors are raised as ``yaml.YAMLError``."""
    return compose_bounded(text, what, error)[1]


def compose_bounded(text: str, what: str, error=UsageError):
    """(the composed root node or None, the data ``yaml.safe_load`` gives), parsed once. The node tree is
    composed first (an alias shares its anchor's node, so this costs what the text costs), counted with its
    aliases expanded up to ``MAX_YAML_NODES`` (``error`` beyond, before anything is constructed: YAML merge
    keys copy their pairs while constructing), then constructed as ``safe_load`` would."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is not None and not yaml_nodes_within(root):
            raise error(yaml_bomb_message(what))
        return root, (loader.construct_document(root) if root is not None else None)
    except RecursionError:
        raise error(f"{what}: YAML nested too deeply") from None
    finally:
        loader.dispose()


def yaml_bomb_message(what: str) -> str:
    return (f"{what}: more than {MAX_YAML_NODES:,} YAML nodes with aliases expanded (the limit); "
            "refused unread (an alias bomb?)")


def read_text_bounded(path, what: str, error=UsageError) -> str:
    """A UTF-8 text file read whole (newlines translated, as ``Path.read_text`` does), after refusing one over
    ``MAX_TEXT_BYTES`` by its size. OSError and UnicodeDecodeError are the caller's to word."""
    from pathlib import Path

    size = Path(path).stat().st_size
    if size > MAX_TEXT_BYTES:
        raise error(f"{what}: the file is {fmt_bytes(size)}, over the {fmt_bytes(MAX_TEXT_BYTES)} limit for it; "
                    "refused unread")
    with open(path, "rb") as handle:
        raw = handle.read(MAX_TEXT_BYTES + 1)
    if len(raw) > MAX_TEXT_BYTES:  # grew since the stat, or a device that reports no size
        raise error(f"{what}: more than {fmt_bytes(MAX_TEXT_BYTES)}, the limit for it; refused")
    return raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")


def fmt_bytes(n: int) -> str:
    """1,048,576 -> '1,048,576 bytes (1 MiB)' style: exact, with a readable size beside it."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            value = n / (1 << shift)
            shown = f"{value:.0f}" if value == int(value) else f"{value:.1f}"
            return f"{n:,} bytes ({shown} {unit})"
    return f"{n:,} bytes"
