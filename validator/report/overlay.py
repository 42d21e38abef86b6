"""Overlays for humans: the heatmap normalised FOR DISPLAY ONLY, colour-mapped, boxes drawn.

``render_panel`` (the report's overlays) and ``render_atlas`` are matplotlib figures (Agg, no display): the
image as it is beside the heat drawn over a grey copy of it, a legend for the boxes and a colour bar whose
scale is fixed and stated: the heat of a pixel divided by the heat a uniform map gives it (1 = uniform), the
same scale on every overlay and atlas so that two pictures can be compared. ``render_overlay`` is the bare
blend (no key) that ``camgate explain`` writes.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from validator.metrics import largest_component_box
from validator.report.escape import plot_text

GREEN = (0, 200, 0)  # annotation
RED = (230, 0, 0)  # box of the largest component above 20% of the max (Zhou et al.)


def colorize(heatmap: np.ndarray) -> np.ndarray:
    """uint8 RGB JET rendering of a map scaled to its own max (display only; metrics never see this)."""
    peak = float(heatmap.max()) if heatmap.size else 0.0
    scaled = heatmap / peak if peak > 0 else np.zeros_like(heatmap)
    jet = cv2.applyColorMap(np.uint8(np.clip(scaled, 0, 1) * 255), cv2.COLORMAP_JET)
    return cv2.cvtColor(jet, cv2.COLOR_BGR2RGB)


def display_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB for display from a grayscale (H, W) / (H, W, 1), RGB or RGBA image: grey is
    repeated into the three colour channels, alpha is dropped, float 0..255 is clipped and rounded."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"cannot display an image of shape {image.shape}; expected 1, 3 or 4 channels")
    if image.dtype != np.uint8:
        image = np.clip(np.round(image.astype(np.float32)), 0, 255).astype(np.uint8)
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def render_overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    boxes=(),
    *,
    cam_threshold: float = 0.2,
    alpha: float = 0.45,
    scale: int | None = None,
) -> np.ndarray:
    """Blend the heatmap over an image; draw annotation boxes green and the CAM box red.

    ``image`` is grayscale, RGB or RGBA (see ``display_rgb``). Small images are enlarged (nearest) so a
    reviewer can see them; ``scale`` overrides the factor.
    """
    image = display_rgb(image)
    height, width = heatmap.shape
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    factor = scale or max(1, 256 // max(height, width))
    blended = cv2.addWeighted(colorize(heatmap), alpha, image, 1 - alpha, 0)
    blended = cv2.resize(blended, (width * factor, height * factor), interpolation=cv2.INTER_NEAREST)
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=float).reshape(-1, 4):
        _rect(blended, (x0, y0, x1, y1), factor, GREEN)
    if heatmap.max() > 0:
        _rect(blended, largest_component_box(heatmap, cam_threshold), factor, RED)
    return blended


def _rect(canvas: np.ndarray, box, factor: int, colour) -> None:
    x0, y0, x1, y1 = (int(round(v * factor)) for v in box)
    cv2.rectangle(canvas, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, thickness=max(1, factor // 2))


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write an RGB (or grayscale / RGBA, shown as RGB) image as PNG."""
    rgb = display_rgb(rgb)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise OSError(f"could not encode {path}")
    from validator.report.files import write_bytes_atomic

    write_bytes_atomic(path, encoded.tobytes())  # temporary file + rename, recorded: a reader never sees half a PNG
    return path


# ------------------------------------------------------------------------- matplotlib figures (the report)

# The colour scale of every overlay and atlas: heat per pixel (or grid cell) / the heat a uniform map gives
# it. Fixed, so that two pictures compare; values above HEAT_MAX are drawn in the top colour (arrow on the bar).
HEAT_MAX = 8.0
HEAT_TICKS = (0, 1, 2, 4, 6, 8)
HEAT_LABEL = "heat ÷ uniform map\n(1 = uniform; fixed scale)"
# Over the photo, heat at or below half the uniform level is left clear and the colour grows opaque towards
# 3x uniform, so the image stays visible where the model does not look.
CLEAR_BELOW, OPAQUE_AT, MAX_ALPHA = 0.5, 3.0, 0.85
# No hottest-region box when the region covers more than this share of the frame: a box around (almost) the
# whole image says nothing and reads as a picture frame. Objects larger than this are excluded by the
# default policy too (``max_box_area: 0.5``).
MAX_HOT_BOX_AREA = 0.5
ANNOTATION_COLOUR, HOT_COLOUR = "#00c800", "#e60000"
HOT_REGION_WORDS = "hottest region (largest area ≥ 20% of the map's peak)"


def _heat_cmap(alpha_ramp: bool):
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    colours = colormaps["turbo"](np.linspace(0.0, 1.0, 256))
    if alpha_ramp:
        values = np.linspace(0.0, HEAT_MAX, 256)
        colours[:, 3] = MAX_ALPHA * np.clip((values - CLEAR_BELOW) / (OPAQUE_AT - CLEAR_BELOW), 0.0, 1.0)
    return ListedColormap(colours, name="camgate-heat" + ("-clear" if alpha_ramp else "")).with_extremes(
        over=colours[-1])


def relative_heat(heatmap: np.ndarray) -> np.ndarray:
    """The map divided by its mean (1 = the heat of a uniform map); zeros for a dead map (display only)."""
    heat = np.where(np.isfinite(heatmap), np.clip(heatmap, 0.0, None), 0.0).astype(np.float64)
    mean = heat.mean() if heat.size else 0.0
    return heat / mean if mean > 0 else np.zeros_like(heat)


def hot_region(heatmap: np.ndarray, cam_threshold: float = 0.2) -> tuple[np.ndarray | None, str]:
    """(box, why): the box of the largest area >= ``cam_threshold`` x the map's peak (the one ``cam_box_iou``
    scores), or None with the reason it is not drawn: a dead map, or heat spread over most of the frame."""
    from validator.metrics import largest_component_box

    heat = np.where(np.isfinite(heatmap), heatmap, 0.0)
    if heat.size == 0 or heat.max() <= 0:
        return None, "no hottest region: the map is empty"
    box = largest_component_box(heat, cam_threshold)
    share = (box[2] - box[0]) * (box[3] - box[1]) / heat.size
    if share > MAX_HOT_BOX_AREA:
        return None, f"no hottest-region box: the heat is spread (its largest hot area spans {share:.0%} of the frame)"
    return box, HOT_REGION_WORDS


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, facecolor="white")


def _to_rgb(fig) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[:, :, :3])


def _box_patch(box, colour: str, style: str = "-", width: float = 1.6):
    from matplotlib import patheffects
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = (float(v) for v in box)  # pixel edges; imshow puts pixel centres on integers
    # not clipped: a box along the frame's edge stays visible; a white halo keeps it visible on hot colours
    return Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linestyle=style,
                     linewidth=width, clip_on=False,
                     path_effects=[patheffects.withStroke(linewidth=width + 1.6, foreground="white")])


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("#d0d7de")


def _colour_bar(fig, cax, cmap, label: str) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(norm=Normalize(0.0, HEAT_MAX), cmap=cmap), cax=cax, extend="max",
                       ticks=HEAT_TICKS)
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=7)


def render_panel(image: np.ndarray, heatmap: np.ndarray, boxes=(), *, caption: str | None = None,
                 cam_threshold: float = 0.2, mask: np.ndarray | None = None) -> np.ndarray:
    """uint8 RGB figure: the image as it is | the heat over a grey copy of it | colour bar (heat / uniform,
    fixed scale); annotation boxes green (the object's mask outline instead, where ``mask`` [H, W] bool at
    the map's size is given: the region every score used) and the hottest region red dashed on both images,
    the legend below and ``caption`` (true and predicted class, confidence, lift) above."""
    return _to_rgb(panel_figure(image, heatmap, boxes, caption=caption, cam_threshold=cam_threshold, mask=mask))


def panel_figure(image: np.ndarray, heatmap: np.ndarray, boxes=(), *, caption: str | None = None,
                 cam_threshold: float = 0.2, mask: np.ndarray | None = None):
    """The matplotlib Figure ``render_panel`` draws (not rendered)."""
    from matplotlib.lines import Line2D

    image = display_rgb(image)
    height, width = heatmap.shape
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    annotations = np.asarray(boxes, dtype=float).reshape(-1, 4)
    hot, hot_words = hot_region(heatmap, cam_threshold)

    fig = _figure(6.4, 3.2)
    grid = fig.add_gridspec(1, 3, width_ratios=[1, 1, 0.06], left=0.015, right=0.87, top=0.86, bottom=0.2,
                            wspace=0.06)
    left, right, cax = fig.add_subplot(grid[0]), fig.add_subplot(grid[1]), fig.add_subplot(grid[2])
    cmap = _heat_cmap(alpha_ramp=True)
    left.imshow(image, interpolation="nearest")
    left.set_title("image", fontsize=8, pad=3)
    right.imshow(grey, interpolation="nearest")
    right.imshow(relative_heat(heatmap), cmap=cmap, vmin=0.0, vmax=HEAT_MAX, interpolation="nearest")
    right.set_title("heat (over a grey copy)", fontsize=8, pad=3)
    outline = mask is not None and np.asarray(mask).shape == (height, width) and np.asarray(mask).any()
    for ax in (left, right):
        _bare(ax)
        if outline:  # the mask's edge on pixel edges, as the scores count its pixels
            ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors=[ANNOTATION_COLOUR], linewidths=1.6)
            continue
        for box in annotations:
            ax.add_patch(_box_patch(box, ANNOTATION_COLOUR))
    if hot is not None:  # on both: on the image as it is, the box shows what the model looks at
        for ax in (left, right):
            ax.add_patch(_box_patch(hot, HOT_COLOUR, "--"))
    _colour_bar(fig, cax, cmap, HEAT_LABEL)
    object_label = ("annotated object (its mask)" if outline else
                    "annotated object" if len(annotations) else "annotated object (none here)")
    handles = [Line2D([], [], color=ANNOTATION_COLOUR, linewidth=1.6, label=object_label),
               Line2D([], [], color=HOT_COLOUR if hot is not None else "none", linewidth=1.6, linestyle="--",
                      label=hot_words)]
    fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.01, 0.0), ncol=1, fontsize=7,
               frameon=False, handlelength=2.2)
    if caption:
        fig.text(0.015, 0.965, plot_text(caption), fontsize=8, va="top", ha="left")
    return fig


def _region_lines(ax, height: int, width: int, corner_fraction: float, border_fraction: float, colour: str):
    """Thin outlines along the cell edges of the four corners and the border band (they cover no cell)."""
    from matplotlib.patches import Rectangle

    cw, ch = corner_fraction * width, corner_fraction * height
    bw, bh = border_fraction * width, border_fraction * height
    kw = {"fill": False, "edgecolor": colour, "linewidth": 0.7}
    for x, y in ((0, 0), (width - cw, 0), (0, height - ch), (width - cw, height - ch)):
        ax.add_patch(Rectangle((x - 0.5, y - 0.5), cw, ch, **kw))
    ax.add_patch(Rectangle((bw - 0.5, bh - 0.5), width - 2 * bw, height - 2 * bh, linestyle=(0, (3, 2)), **kw))


def render_atlas(mean_map: np.ndarray, corner_fraction: float = 0.125, *, object_map: np.ndarray | None = None,
                 border_fraction: float = 0.1, title: str | None = None) -> np.ndarray:
    """uint8 RGB figure of a heat atlas (a mean unit-sum map on the grid) on the fixed heat / uniform scale,
    with thin outlines of the corner regions and the border band (dashed); beside it, when given,
    ``object_map``: per cell, the mean share covered by the annotated objects (where the objects lie)."""
    return _to_rgb(atlas_figure(mean_map, corner_fraction, object_map=object_map, border_fraction=border_fraction,
                                title=title))


def atlas_figure(mean_map: np.ndarray, corner_fraction: float = 0.125, *, object_map: np.ndarray | None = None,
                 border_fraction: float = 0.1, title: str | None = None):
    """The matplotlib Figure ``render_atlas`` draws (not rendered)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    height, width = mean_map.shape
    panels = 2 if object_map is not None else 1
    fig = _figure(4.2 if panels == 1 else 7.0, 3.3)
    ratios = [1, 0.06] * panels
    grid = fig.add_gridspec(1, 2 * panels, width_ratios=ratios, left=0.02, right=0.83 if panels == 1 else 0.93,
                            top=0.84, bottom=0.17, wspace=0.08 if panels == 1 else 0.25)
    ax, cax = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    cmap = _heat_cmap(alpha_ramp=False)
    ax.imshow(relative_heat(mean_map), cmap=cmap, vmin=0.0, vmax=HEAT_MAX, interpolation="nearest")
    ax.set_title("mean heat", fontsize=8, pad=3)
    _bare(ax)
    _region_lines(ax, height, width, corner_fraction, border_fraction, "white")
    _colour_bar(fig, cax, cmap, HEAT_LABEL)
    if object_map is not None:
        oax, ocax = fig.add_subplot(grid[2]), fig.add_subplot(grid[3])
        greens = colormaps["Greens"]
        oax.imshow(np.clip(object_map, 0.0, 1.0), cmap=greens, vmin=0.0, vmax=1.0, interpolation="nearest")
        oax.set_title("where the annotated objects lie", fontsize=8, pad=3)
        _bare(oax)
        _region_lines(oax, height, width, corner_fraction, border_fraction, "#57606a")
        bar = fig.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap=greens), cax=ocax)
        bar.set_label("share of images with an object box here", fontsize=7)
        bar.ax.tick_params(labelsize=7)
    handles = [Line2D([], [], color="#57606a", linewidth=0.7, label=f"corner regions ({corner_fraction:.1%} of each side)"),
               Line2D([], [], color="#57606a", linewidth=0.7, linestyle=(0, (3, 2)),
                      label=f"border band (outer {border_fraction:.0%})")]
    fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.01, 0.0), ncol=2 if panels == 2 else 1,
               fontsize=7, frameon=False)
    if title:
        fig.text(0.02, 0.97, plot_text(title), fontsize=8, va="top", ha="left")
    return fig
