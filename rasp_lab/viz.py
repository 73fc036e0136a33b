"""Pictures of programs and compiled models, for teaching and research (`pip install rasp-lab[viz]`).

    from rasp_lab import viz
    viz.plot_program_graph(model, "graph.png")            # the computation graph, coloured by layer
    viz.plot_attention(model, ["a", "b"], 1, 0, "attn.png")  # one head's pattern on one input
    viz.plot_qk_table(model, 1, 0, "qk.png", dpi=300)     # that head's QK table, selected cells marked
    viz.plot_residual(model, ["a", "b"], "resid.png")     # the residual stream after every block
    viz.plot_composition_growth("growth.png")             # AND / OR head widths per encoding
    fig = viz.plot_qk_table(model, 1, 0)                  # no path: just the Figure, for a notebook
    print(viz.program_graph_dot(model))                   # the graph as Graphviz DOT text

Every `plot_*` function draws one matplotlib Figure and returns it; given a `path`, it also
saves it there (the format follows the file's suffix: PNG for `.png`). `dpi` (default 150)
is the figure's resolution, so it sets both the saved file's pixels per inch and the size a
notebook shows it at. Figures are built with matplotlib's object-oriented API on an Agg
canvas, never through pyplot: nothing opens a window or needs a display, nothing is
registered with pyplot, so nothing needs closing (a dropped figure is garbage-collected).
To look at one interactively, display the returned Figure (Jupyter shows it inline) or
open the saved file.

Every colour scale paints 0 white, so an empty cell reads as empty. A scale is one-sided
(white to red from 0 up, attention white to blue) unless values of both signs occur; then
it diverges around 0 (blue below, red above).

`import rasp_lab` never imports matplotlib; importing this module without it raises an
ImportError that says how to install it.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

try:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Colormap, LinearSegmentedColormap, Normalize, TwoSlopeNorm
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyArrowPatch, Patch
    from matplotlib.path import Path
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter
except ImportError as err:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "rasp_lab.viz draws with matplotlib, which is not installed: pip install rasp-lab[viz]"
    ) from err

from rasp_lab import naming, rasp
from rasp_lab.artifact import HeadBlock
from rasp_lab.compiler.basis import ONE, Direction
from rasp_lab.compiler.block_context import BOS_DIRECTION_NAME
from rasp_lab.compiler.model import CompiledModel
from rasp_lab.graph import ProgramGraph, build_graph

__all__ = [
    "plot_program_graph",
    "program_graph_dot",
    "plot_attention",
    "plot_qk_table",
    "plot_residual",
    "plot_composition_growth",
    "composition_growth",
    "graph_layers",
    "layer_colour",
    "qk_selected",
    "NodeStage",
]

PathLike = str | os.PathLike | None

EMBEDDING_COLOUR = "#d9d9d9"
"""Fill for tokens and indices (and anything else the embedding writes)."""

LAYER_COLOURS = (
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#dbdb8d",
    "#9edae5",
    "#fdd0a2",
    "#b3de69",
    "#bebada",
    "#80b1d3",
    "#fccde5",
    "#ccebc5",
    "#ffed6f",
)
"""Fills for layer (or depth) 0, 1, 2, ... (light tab20 and Set3 colours, cycled after 16):
all light, so black labels stay readable."""

DPI = 150
"""Pixels per inch of every figure unless a plot is given `dpi=`."""


def _ramp(name: str, colours: Sequence[Any]) -> LinearSegmentedColormap:
    """Colours spread evenly over [0, 1]; 257 entries, so a white middle entry sits exactly at 0.5."""
    return LinearSegmentedColormap.from_list(name, list(colours), N=257)


_RDBU = matplotlib.colormaps["RdBu_r"]
_NEGATIVE = [_RDBU(0.12), _RDBU(0.3), "white"]  # RdBu_r without its darkest ends: black marks stay visible
_POSITIVE = ["white", _RDBU(0.7), _RDBU(0.88)]
DIVERGING = _ramp("rasp_lab_diverging", _NEGATIVE + _POSITIVE[1:])
"""Blue below 0, white at 0, red above: for values of both signs (with a norm centred on 0)."""
POSITIVE = _ramp("rasp_lab_positive", _POSITIVE)
"""White at 0 to red: for values that are never negative."""
NEGATIVE = _ramp("rasp_lab_negative", _NEGATIVE)
"""Blue to white at 0: for values that are never positive."""
ATTENTION = _ramp("rasp_lab_attention", ["white", *matplotlib.colormaps["Blues"](np.linspace(0.25, 1.0, 4))])
"""White at weight 0 to dark blue at 1."""


def _colour_scale(values: np.ndarray) -> tuple[Colormap, Normalize]:
    """A colour map and norm that paint 0 white: one-sided (0 to the largest value, or the
    smallest to 0) unless both signs occur, then diverging around 0. Float32 noise (below a
    millionth of the largest magnitude) does not count as a sign."""
    noise = 1e-6 * float(np.abs(values).max(initial=0.0))
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    negative, positive = low < -noise, high > noise
    if negative and positive:
        bound = max(-low, high)
        return DIVERGING, TwoSlopeNorm(0.0, -bound, bound)
    if negative:
        return NEGATIVE, Normalize(low, 0.0)
    return POSITIVE, Normalize(0.0, high if positive else 1.0)


def _dark(value: float, norm: Normalize) -> bool:
    """Whether a cell holding `value` is dark enough to need white text."""
    return abs(value) > 0.75 * max(abs(norm.vmin), abs(norm.vmax))


def _new_figure(width: float, height: float, dpi: float) -> Figure:
    if isinstance(dpi, bool) or not isinstance(dpi, numbers.Real) or not 0 < dpi < math.inf:
        raise ValueError(f"dpi must be a positive number of pixels per inch, got {dpi!r}")
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)  # render with Agg whatever the session's backend or display
    return fig


def _save(fig: Figure, path: PathLike) -> Figure:
    if path is not None:
        fig.savefig(os.fspath(path), dpi=fig.dpi)
    return fig


def layer_colour(layer: int | None) -> str:
    """The fill for `layer` (None: the embedding)."""
    return EMBEDDING_COLOUR if layer is None else LAYER_COLOURS[layer % len(LAYER_COLOURS)]


# ---------------------------------------------------------------------------- program graph


@dataclass(frozen=True)
class NodeStage:
    """Where one node of the program graph sits in the picture.

    `layer` is the layer that computes it (for a selector: the layer whose head evaluates
    it; None for the embedding) or, for a program that is not compiled, its depth; `column`
    orders the stages left to right (embedding, then per layer: selectors, attention, MLP);
    `caption` says what the node is and where it is computed."""

    label: str
    kind: str
    layer: int | None
    column: int
    caption: str
    is_selector: bool


def _kind(expr: rasp.RASPExpr) -> str:
    if isinstance(expr, rasp.TokensType | rasp.IndicesType | rasp.LengthType):
        return "input"
    name = type(expr).__name__
    if isinstance(expr, rasp.SOp) and rasp.is_numerical(expr):
        name += ", numerical"
    return name


def _model_name(model: CompiledModel) -> str:
    name = getattr(model, "name", None)
    return name if isinstance(name, str) else model.program.label


@dataclass(frozen=True)
class _Wiring:
    """The nodes and edges the graph pictures draw, whatever they were read from."""

    output: str
    graph: nx.DiGraph  # an edge child -> parent for every use
    order: tuple[str, ...]  # children first
    kinds: Mapping[str, str]
    selectors: frozenset[str]


def _program_wiring(graph: ProgramGraph) -> _Wiring:
    return _Wiring(
        output=graph.output.label,
        graph=graph.graph,
        order=graph.order,
        kinds={label: _kind(expr) for label, expr in graph.nodes.items()},
        selectors=frozenset(label for label, expr in graph.nodes.items() if isinstance(expr, rasp.Selector)),
    )


def _weights_wiring(model: CompiledModel) -> _Wiring:
    """A loaded model's graph, read from its weights: a head's query and key SOps feed its
    selector, which with its value SOps feeds the SOp it writes; an MLP's inputs feed its
    output. The compiler's own directions (one, BOS, scratch) are no nodes. This is the
    compiled graph, edge for edge (a test checks), except that a composed selector (&, |,
    ~) shows as the one selector its head evaluates, reading what the head reads."""
    sops = model.layout.sops
    graph = nx.DiGraph()
    kinds: dict[str, str] = {}

    def sop_kind(label: str, kind: str) -> str:
        numerical = label in sops and sops[label].encoding is rasp.Encoding.NUMERICAL
        return kind + (", numerical" if numerical else "")

    def read(directions: Sequence[Direction]) -> list[str]:
        return list(dict.fromkeys(d.name for d in directions if not d.internal))

    for label, location in sops.items():
        if location.head_layer is None and location.mlp_layer is None:
            graph.add_node(label)
            kinds[label] = "input" if label in ("tokens", "indices") else sop_kind(label, "embedded")
    selectors = set()
    for lw in model.weights.layers:
        for head in lw.heads:
            reads = read(head.query) + read(head.key)
            if head.selector in sops or head.selector == head.label:  # no selector of its own (length)
                graph.add_edges_from((source, head.label) for source in reads)
            else:
                selectors.add(head.selector)
                kinds[head.selector] = "selector"
                graph.add_edges_from((source, head.selector) for source in reads)
                graph.add_edge(head.selector, head.label)
            graph.add_edges_from((source, head.label) for source in read(head.value))
            kinds.setdefault(head.label, sop_kind(head.label, "head"))
        for mlp in lw.mlps:
            graph.add_node(mlp.label)
            graph.add_edges_from((source, mlp.label) for source in read(mlp.inputs))
            kinds[mlp.label] = sop_kind(mlp.label, mlp.kind)  # a SelectorWidth's MLP names it
    unread = [label for label in graph.nodes if kinds.get(label) == "input" and not graph.out_degree(label)]
    graph.remove_nodes_from(unread)  # the embedding writes tokens and indices whether used or not
    for label in graph.nodes:
        kinds.setdefault(label, sop_kind(label, "SOp"))
    added = {label: i for i, label in enumerate(graph.nodes)}
    order = tuple(nx.lexicographical_topological_sort(graph, key=added.__getitem__))
    return _Wiring(model.output_location.label, graph, order, kinds, frozenset(selectors))


def _program_graph(program_or_model: rasp.SOp | CompiledModel) -> tuple[_Wiring, CompiledModel | None]:
    if isinstance(program_or_model, CompiledModel):
        if program_or_model.is_loaded:  # weights, no program
            return _weights_wiring(program_or_model), program_or_model
        sets = program_or_model.value_sets
        graph = sets.graph if sets.graph is not None else build_graph(program_or_model.program)
        return _program_wiring(graph), program_or_model
    if isinstance(program_or_model, rasp.RASPExpr):
        return _program_wiring(build_graph(program_or_model)), None
    raise TypeError(
        f"expected a RASP program (an SOp) or a CompiledModel, got {type(program_or_model).__name__} {program_or_model!r}"
    )


def graph_layers(program_or_model: rasp.SOp | CompiledModel) -> dict[str, NodeStage]:
    """label -> NodeStage for every node of the graph drawn by plot_program_graph and
    program_graph_dot. For a CompiledModel that is the compiled graph (with any product SOps
    the compiler added; for a model loaded from a file, which holds no program, the graph
    its weights wire), each SOp at the layer that computes it (`model.layout.sops`);
    for a program, each node at its depth (longest path from tokens / indices)."""
    graph, model = _program_graph(program_or_model)
    if model is not None:
        return _model_stages(graph, model)
    depth: dict[str, int] = {}
    for label in graph.order:  # children first
        depth[label] = max((depth[p] + 1 for p in graph.graph.predecessors(label)), default=0)
    return {
        label: NodeStage(
            label=label,
            kind=graph.kinds[label],
            layer=depth[label],
            column=depth[label],
            caption=f"{graph.kinds[label]} · depth {depth[label]}",
            is_selector=label in graph.selectors,
        )
        for label in graph.order
    }


def _model_stages(graph: _Wiring, model: CompiledModel) -> dict[str, NodeStage]:
    """Stages on a half-integer scale: embedding 0, layer l's heads 2l + 1, its MLPs 2l + 2,
    selectors evaluated by layer l's heads strictly between 2l and 2l + 1 (nested ones
    further left), then squeezed into consecutive columns."""
    g = graph.graph
    sops = model.layout.sops
    where: dict[str, tuple[float, int | None, str]] = {}  # label -> (stage, layer, caption)
    for label in graph.order:
        location = sops.get(label)
        if location is None:
            continue
        if location.mlp_layer is not None:
            layer = location.mlp_layer
            part = "attn+MLP" if location.head_layer == layer else "MLP"
            where[label] = (2 * layer + 2, layer, f"L{layer} {part}")
        elif location.head_layer is not None:
            layer = location.head_layer
            where[label] = (2 * layer + 1, layer, f"L{layer} attn")
        else:
            where[label] = (0, None, "embedding")
    selectors = [label for label in graph.order if label in graph.selectors]
    height: dict[str, int] = {}
    for label in selectors:  # graph.order lists children first
        inner = [height[c] + 1 for c in g.predecessors(label) if c in height]
        height[label] = max(inner, default=0)
    tallest = max(height.values(), default=0)
    head_layer: dict[str, int] = {}
    for label in reversed(selectors):  # consumers first
        layers = [
            sops[s].head_layer for s in g.successors(label) if s in sops and sops[s].head_layer is not None
        ]
        layers += [head_layer[s] for s in g.successors(label) if s in head_layer]
        if layers:
            head_layer[label] = min(layers)
    for label in selectors:
        if label in head_layer:
            layer = head_layer[label]
            stage = 2 * layer + (height[label] + 1) / (tallest + 2)
            where[label] = (stage, layer, f"L{layer} head")
    for label in graph.order:  # anything the layout does not place: after its inputs
        if label not in where:
            stage = max((where[p][0] for p in g.predecessors(label)), default=-1) + 0.5
            where[label] = (stage, None, "")
    columns = {stage: i for i, stage in enumerate(sorted({stage for stage, _, _ in where.values()}))}
    out = {}
    for label in graph.order:
        stage, layer, part = where[label]
        kind = graph.kinds[label]
        caption = kind if part == "embedding" and kind == "input" else f"{kind} · {part}" if part else kind
        out[label] = NodeStage(label, kind, layer, columns[stage], caption, label in graph.selectors)
    return out


_Slot = str | tuple  # a node label, or ("via", source, column): a waypoint of the long edges from source


def _routes(
    graph: _Wiring, stages: Mapping[str, NodeStage]
) -> tuple[list[list[_Slot]], dict[tuple[str, str], list[_Slot]]]:
    """Columns of slots, ordered to reduce crossings, and each edge's chain of slots.

    An edge spanning several columns gets a waypoint in every column it crosses (as in a
    Sugiyama layout), so it runs in a lane of its own instead of through other nodes; long
    edges from one source share their waypoints (one lane until they part)."""
    n_columns = max(s.column for s in stages.values()) + 1
    columns: list[list[_Slot]] = [[] for _ in range(n_columns)]
    for label in graph.order:
        columns[stages[label].column].append(label)
    chains: dict[tuple[str, str], list[_Slot]] = {}
    links: dict[_Slot, list[_Slot]] = {}  # slot -> neighbouring slots, both ways
    for source, target in graph.graph.edges:
        first, last = stages[source].column, stages[target].column
        vias: list[_Slot] = [("via", source, c) for c in range(first + 1, last)]
        for via in vias:
            if via not in links:
                columns[via[2]].append(via)
                links[via] = []
        chain = [source, *vias, target]
        chains[(source, target)] = chain
        for a, b in zip(chain, chain[1:]):
            if b not in links.setdefault(a, []):
                links[a].append(b)
                links.setdefault(b, []).append(a)
    position = {slot: i - (len(col) - 1) / 2 for col in columns for i, slot in enumerate(col)}
    for sweep in range(6):
        order = range(1, n_columns) if sweep % 2 == 0 else range(n_columns - 2, -1, -1)
        side = -1 if sweep % 2 == 0 else 1  # look at the previous column, then at the next
        for c in order:

            def centre(slot: _Slot, c: int = c, side: int = side) -> float:
                near = [position[n] for n in links.get(slot, []) if _column(n, stages) == c + side]
                return float(np.mean(near)) if near else position[slot]

            columns[c].sort(key=centre)
            position.update({slot: i - (len(columns[c]) - 1) / 2 for i, slot in enumerate(columns[c])})
    return columns, chains


def _column(slot: _Slot, stages: Mapping[str, NodeStage]) -> int:
    return slot[2] if isinstance(slot, tuple) else stages[slot].column


def _legend_entries(stages: Mapping[str, NodeStage], compiled: bool) -> list[Patch]:
    layers = sorted({s.layer for s in stages.values() if s.layer is not None})
    entries = []
    if compiled and any(s.layer is None for s in stages.values()):
        entries.append(Patch(facecolor=EMBEDDING_COLOUR, edgecolor="black", label="embedding"))
    word = "layer" if compiled else "depth"
    entries += [
        Patch(facecolor=layer_colour(layer), edgecolor="black", label=f"{word} {layer}") for layer in layers
    ]
    if any(s.is_selector for s in stages.values()):
        entries.append(Patch(facecolor="white", edgecolor="black", linestyle="--", label="selector"))
    return entries


def plot_program_graph(
    program_or_model: rasp.SOp | CompiledModel,
    path: PathLike = None,
    *,
    title: str | None = None,
    dpi: float = DPI,
) -> Figure:
    """The program's computation graph, left to right (saved to `path` if given).

    Given a CompiledModel: the compiled graph (see graph_layers; for a model loaded from a
    file, the graph its weights wire, its selectors named as the heads record them, its
    nodes captioned with the compiler's block kinds), one column per stage
    (embedding; per layer its selectors, heads, MLPs), every node filled with its layer's
    colour (the embedding grey) and captioned with its kind and where it is computed.
    Given a program: one column per depth, coloured by depth. Selectors have dashed
    outlines. Returns the Figure (see the module docstring)."""
    graph, model = _program_graph(program_or_model)
    compiled = model is not None
    stages = graph_layers(program_or_model)
    columns, chains = _routes(graph, stages)
    fontsize, caption_size, pad = 9.0, 7.0, 0.3
    node_height, via_height = 0.62, 0.22
    legend = _legend_entries(stages, compiled)
    if title is None:
        output = _model_name(model) if compiled else graph.output
        if compiled:
            n = len(model.weights.layers)
            how = "loaded" if model.is_loaded else "compiled"
            title = f"{output!r} {how}: {n} layer{'s' if n != 1 else ''}, residual width {model.layout.width}"
            if model.is_loaded:
                title += ", graph read from its weights"
        else:
            title = f"{output!r}: program graph, by depth"

    fig = _new_figure(4.0, 3.0, dpi)  # resized once the texts are measured
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    renderer = fig.canvas.get_renderer()
    texts, captions, half = {}, {}, {}
    for label in graph.order:
        stage = stages[label]
        box = dict(
            boxstyle=f"round,pad={pad}",
            facecolor=layer_colour(stage.layer),
            edgecolor="black",
            linewidth=0.9,
            linestyle="--" if stage.is_selector else "-",
        )
        texts[label] = ax.text(
            0, 0, label, ha="center", va="center", fontsize=fontsize, bbox=box, zorder=3, gid=label
        )
        captions[label] = ax.text(
            0, 0, stage.caption, ha="center", va="top", fontsize=caption_size, color="#444444", zorder=3
        )
        box_pad = pad * fontsize / 72
        half[label] = texts[label].get_window_extent(renderer).width / fig.dpi / 2 + box_pad
    column_half = [
        max(
            [half[s] for s in col if isinstance(s, str)]
            + [captions[s].get_window_extent(renderer).width / fig.dpi / 2 for s in col if isinstance(s, str)]
            + [0.2]
        )
        for col in columns
    ]
    gap, margin = 0.55, 0.3
    xs, x = [], margin
    for h in column_half:
        xs.append(x + h)
        x += 2 * h + gap
    drawn = x - gap + margin
    width = max(drawn, 4.5, _text_width(fig, [title], 11, weight="bold") + 0.6)
    xs = [x + (width - drawn) / 2 for x in xs]  # centred under a wider title
    heights = [sum(node_height if isinstance(s, str) else via_height for s in col) for col in columns]
    body = max(heights)
    per_row = max(1, min(len(legend), int((width - 0.4) / 1.05)))  # legend entries are about 1 inch wide
    top, bottom = 0.6, 0.2 + 0.28 * -(-len(legend) // per_row)
    height = body + top + bottom
    fig.set_size_inches(width, height)
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)

    where: dict[_Slot, tuple[float, float]] = {}
    for c, col in enumerate(columns):
        y = bottom + (body + heights[c]) / 2
        for slot in col:
            step = node_height if isinstance(slot, str) else via_height
            centre = y - step / 2 + (0.06 if isinstance(slot, str) else 0.0)
            where[slot] = (xs[c], centre)
            if isinstance(slot, str):
                texts[slot].set_position((xs[c], centre))
                captions[slot].set_position((xs[c], centre - _half_height(fontsize, pad) - 0.03))
            y -= step
    for chain in chains.values():
        ax.add_patch(_edge_patch(chain, where, half, xs, column_half, stages))
    ax.text(width / 2, height - 0.3, title, ha="center", va="center", fontsize=11, weight="bold")
    ax.legend(
        handles=legend,
        loc="lower center",
        ncol=per_row,
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
        handlelength=1.6,
        columnspacing=1.2,
    )
    return _save(fig, path)


def _half_height(fontsize: float, pad: float) -> float:
    """Half a node box's height in inches: one line of text plus the padding."""
    return (fontsize * 1.2 / 2 + pad * fontsize) / 72


def _edge_patch(chain, where, half, xs, column_half, stages) -> FancyArrowPatch:
    """The path of one edge: out of the source's right side, across each gap as an S-curve,
    straight through each waypoint's column, into the target's left side."""
    source = chain[0]
    sx, sy = where[source]
    vertices = [(sx + half[source], sy)]
    codes = [Path.MOVETO]
    c = stages[source].column
    vertices.append((xs[c] + column_half[c], sy))
    codes.append(Path.LINETO)
    for slot in chain[1:]:
        column = _column(slot, stages)
        x, y = where[slot]
        x0, y0 = vertices[-1]
        x1 = xs[column] - column_half[column]
        if x1 <= x0:  # not left to right (never for graph_layers' columns): a plain curve
            x1 = x0 + 0.3
        mid = (x0 + x1) / 2
        vertices += [(mid, y0), (mid, y), (x1, y)]
        codes += [Path.CURVE4] * 3
        if isinstance(slot, tuple):
            vertices.append((xs[column] + column_half[column], y))
        else:
            vertices.append((x - half[slot], y))
        codes.append(Path.LINETO)
    return FancyArrowPatch(
        path=Path(vertices, codes),
        arrowstyle="-|>,head_length=0.5,head_width=0.25",
        mutation_scale=12,
        color="#555555",
        linewidth=0.9,
        zorder=2,
    )


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def program_graph_dot(program_or_model: rasp.SOp | CompiledModel) -> str:
    """The graph plot_program_graph draws, as Graphviz DOT text (render it with
    `dot -Tpng`): same nodes, captions, colours and columns (`rank=same` groups)."""
    graph, model = _program_graph(program_or_model)
    stages = graph_layers(program_or_model)
    lines = [
        f"digraph {_dot_quote(graph.output)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
        '  edge [color="#555555"];',
    ]
    for label in graph.order:
        stage = stages[label]
        style = "rounded,filled,dashed" if stage.is_selector else "rounded,filled"
        lines.append(
            f"  {_dot_quote(label)} [label={_dot_quote(label + chr(10) + stage.caption)}, "
            f'fillcolor="{layer_colour(stage.layer)}", style="{style}"];'
        )
    for source, target in graph.graph.edges:
        lines.append(f"  {_dot_quote(source)} -> {_dot_quote(target)};")
    by_column: dict[int, list[str]] = {}
    for label in graph.order:
        by_column.setdefault(stages[label].column, []).append(label)
    for column in sorted(by_column):
        members = " ".join(f"{_dot_quote(label)};" for label in by_column[column])
        lines.append(f"  {{ rank=same; {members} }}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- heads


def _head(model: CompiledModel, layer: int, head: int | str) -> tuple[int, HeadBlock]:
    if not isinstance(model, CompiledModel):
        raise TypeError(f"expected a CompiledModel, got {type(model).__name__}")
    n_layers = len(model.weights.layers)
    if not (isinstance(layer, int) and 0 <= layer < n_layers):
        raise ValueError(f"layer {layer!r} out of range: the model has layers 0..{n_layers - 1}")
    heads = model.weights.layers[layer].heads
    if not heads:
        with_heads = [lw for lw, w in enumerate(model.weights.layers) if w.heads]
        raise ValueError(f"layer {layer} has no attention heads; layers with heads: {with_heads}")
    if isinstance(head, str):
        labels = [h.label for h in heads]
        if head not in labels:
            raise ValueError(f"layer {layer} has no head {head!r}; its heads are {labels}")
        index = labels.index(head)
    elif isinstance(head, int) and 0 <= head < len(heads):
        index = head
    else:
        raise ValueError(
            f"head {head!r} out of range: layer {layer} has heads 0..{len(heads) - 1} ({[h.label for h in heads]})"
        )
    return index, heads[index]


def _head_title(layer: int, index: int, block: HeadBlock) -> str:
    strategy = f" ({block.strategy} encoding)" if block.strategy else ""
    return (
        f"layer {layer}, head {index}: {block.label} \u2190 {block.selector}{strategy}\n"
        f"coldness {block.coldness:.2f}, margin {block.margin:g}, leak \u2264 {block.leak_bound:.1e}"
    )


def _position_labels(model: CompiledModel, tokens: Sequence[Any]) -> list[str]:
    """'0 BOS', '1 a', ...: a repeated token still names one row or column."""
    return [f"{i} {t}" for i, t in enumerate([model.input_encoder.bos_token, *tokens])]


def plot_attention(
    model: CompiledModel,
    tokens: Sequence[Any],
    layer: int,
    head: int | str,
    path: PathLike = None,
    *,
    dpi: float = DPI,
) -> Figure:
    """Head `head` (an index, or the label of the SOp it computes) of `layer`: its attention
    pattern on `tokens` (given without BOS), queries down, keys across, both labelled with
    position and token ('0 BOS', '1 a', ...); weights written in the cells, weight 0 white.
    Returns the Figure."""
    index, block = _head(model, layer, head)
    tokens = list(tokens)
    out = model.apply([model.input_encoder.bos_token, *tokens])
    pattern = np.asarray(out.attention[layer][index], dtype=float)  # [query, key]
    labels = _position_labels(model, tokens)
    n = len(labels)
    title = _head_title(layer, index, block)
    cell, tick_size = (0.45, 9.0) if n <= 10 else (0.3, 7.0)
    # Lay out in inches: labels measured, then the pattern, the colour bar and the title placed.
    fig = _new_figure(1.0, 1.0, dpi)
    left = 0.45 + _text_width(fig, labels, tick_size) + 0.15
    rotate = _text_width(fig, labels, tick_size) > cell - 0.05  # key labels side by side if they fit
    key_labels = _text_width(fig, labels, tick_size) if rotate else tick_size * 1.3 / 72
    above = 0.1 + key_labels + 0.35  # top tick labels, then the x label
    title_room = 0.55
    plot = max(n * cell, 1.8)
    body = plot
    right = 1.1
    width = max(left + plot + right, _text_width(fig, title.split("\n"), 9) + 0.5)
    height = title_room + above + body + 0.25
    fig.set_size_inches(width, height)
    left += (width - (left + plot + right)) / 2  # centred under a wider title
    y0 = height - title_room - above - plot
    ax = fig.add_axes((left / width, y0 / height, plot / width, plot / height))
    image = ax.imshow(
        pattern, cmap=ATTENTION, norm=Normalize(0.0, 1.0), aspect="auto", interpolation="nearest"
    )
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    ax.set_xticks(range(n), labels=labels, rotation=90 if rotate else 0, fontsize=tick_size)
    ax.set_yticks(range(n), labels=labels, fontsize=tick_size)
    ax.set_xlabel("key (position, token)")
    ax.set_ylabel("query (position, token)")
    if n <= 16:
        for q in range(n):
            for k in range(n):
                value = pattern[q, k]
                if value >= 0.005:
                    ax.text(
                        k,
                        q,
                        f"{value:.2f}".lstrip("0") if value < 0.995 else "1",
                        ha="center",
                        va="center",
                        fontsize=8 if n <= 10 else 7,
                        color="white" if value > 0.6 else "black",
                    )
    fig.text(0.5, 1 - title_room / 2 / height, title, ha="center", va="center", fontsize=9)
    bar_h = min(body, 3.0)
    top_edge = y0 + plot
    bar = fig.add_axes(
        ((left + plot + 0.25) / width, (top_edge - bar_h) / height, 0.14 / width, bar_h / height)
    )
    fig.colorbar(image, cax=bar, label="attention weight")
    return _save(fig, path)


def qk_selected(model: CompiledModel, layer: int, head: int | str) -> np.ndarray:
    """[len(query), len(key)] bool over the head's QK table: the cells plot_qk_table marks.

    A query position holds `one` (the bias direction) besides its value directions, so a
    value row's logits are its row plus the `one` row; `one`'s own row is the logit of
    queries without a value direction here. A cell is selected when its logit is the row's
    top over the non-BOS keys and that top is at least the BOS key's logit (strictly above
    for an Aggregate's head, level with it for a SelectorWidth head). The BOS query's row
    (the BOS position attends BOS) is never marked."""
    _, block = _head(model, layer, head)
    return _selected(block, _bos_direction(model))


def _bos_direction(model: CompiledModel) -> Direction:
    return Direction(BOS_DIRECTION_NAME, model.input_encoder.bos_token, internal=True)


def _selected(block: HeadBlock, bos: Direction) -> np.ndarray:
    w = np.asarray(block.w_qk, dtype=float)  # [query, key]
    bos_col = block.key.index(bos) if bos in block.key else None
    one = block.query.index(ONE) if ONE in block.query else None
    others = [j for j in range(len(block.key)) if j != bos_col]
    selected = np.zeros(w.shape, dtype=bool)
    if not others:
        return selected
    for r, direction in enumerate(block.query):
        if direction == bos:
            continue
        logits = w[r] if r == one or one is None else w[r] + w[one]
        top = logits[others].max()
        if bos_col is None or top >= logits[bos_col] - 1e-9:
            selected[r, others] = np.abs(logits[others] - top) <= 1e-9
    return selected


def _block_edges(directions: Sequence[Direction]) -> list[float]:
    """Positions (between cells) where the SOp of consecutive directions changes."""
    return [i - 0.5 for i in range(1, len(directions)) if directions[i].name != directions[i - 1].name]


def plot_qk_table(
    model: CompiledModel, layer: int, head: int | str, path: PathLike = None, *, dpi: float = DPI
) -> Figure:
    """Head `head` (an index, or the label of the SOp it computes) of `layer`: its QK table
    `w_qk` in table units (before coldness), query directions down, key directions across,
    labelled `sop:value`; lines separate SOps, a dot marks every selected cell (see
    qk_selected), and small tables show their entries. Returns the Figure."""
    index, block = _head(model, layer, head)
    w = np.asarray(block.w_qk, dtype=float)  # [query, key]
    rows = [str(d) for d in block.query]
    cols = [str(d) for d in block.key]
    big = max(w.shape) > 30
    # Cells sized for their numbers: 8 pt (7 pt in tables over 30 directions) is the smallest
    # a reader takes in at 100% zoom.
    cell, tick_size, number_size = (0.3, 6.0, 7.0) if big else (0.42, 8.0, 8.0)
    title = _head_title(layer, index, block) + "\nQK table in table units (before coldness); \u25cf selected"
    # Lay out in inches: labels measured, then the table, the colour bar and the title placed.
    fig = _new_figure(1.0, 1.0, dpi)
    left = 0.45 + _text_width(fig, rows, tick_size) + 0.1
    plot_w, plot_h = w.shape[1] * cell, w.shape[0] * cell
    body = max(plot_h, 1.6)
    below = max(0.45 + _text_width(fig, cols, tick_size) + 0.1 - (body - plot_h), 0.15)
    title_w = _text_width(fig, title.split("\n"), 9)
    right = 1.25
    width = max(left + plot_w + right, title_w + 0.4)
    top = 0.85
    height = top + body + below
    fig.set_size_inches(width, height)
    left += (width - (left + plot_w + right)) / 2  # centred under a wider title
    y0 = below + body - plot_h  # top-aligned with the colour bar
    ax = fig.add_axes((left / width, y0 / height, plot_w / width, plot_h / height))
    cmap, norm = _colour_scale(w)
    image = ax.imshow(w, cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(cols)), labels=cols, rotation=90, fontsize=tick_size)
    ax.set_yticks(range(len(rows)), labels=rows, fontsize=tick_size)
    ax.set_xlabel("key direction")
    ax.set_ylabel("query direction" if plot_h >= 1.4 else "query")
    for x in _block_edges(block.key):
        ax.axvline(x, color="black", linewidth=0.6)
    for y in _block_edges(block.query):
        ax.axhline(y, color="black", linewidth=0.6)
    small = w.size <= 900
    if small:
        for r, c in zip(*np.nonzero(w)):
            ax.text(
                c,
                r + 0.08,
                f"{w[r, c]:g}",
                ha="center",
                va="top",
                fontsize=number_size,
                color="white" if _dark(w[r, c], norm) else "black",
            )
    marked = np.argwhere(_selected(block, _bos_direction(model)))
    if len(marked):
        ax.scatter(
            marked[:, 1],
            marked[:, 0] - (0.2 if small else 0.0),
            s=9 if big else 16,
            marker="o",
            facecolor="black",
            edgecolor="white",
            linewidth=0.4,
            zorder=3,
        )
    fig.text(0.5, 1 - 0.4 / height, title, ha="center", va="center", fontsize=9)
    bar_h = min(body, 3.0)
    bar = fig.add_axes(
        ((left + plot_w + 0.25) / width, (below + body - bar_h) / height, 0.14 / width, bar_h / height)
    )
    fig.colorbar(image, cax=bar, label="logit (table units)")
    return _save(fig, path)


# ---------------------------------------------------------------------------- residual stream


def _block_writes(model: CompiledModel, name: str) -> list[str]:
    """What block `name` ('embed', 'layer_l/attn', 'layer_l/mlp') writes to the stream."""
    if name == "embed":
        return ["tokens", "indices", "one"]
    layer_text, part = name.split("/")
    lw = model.weights.layers[int(layer_text.removeprefix("layer_"))]
    if part == "attn":
        return [f"{h.label} \u2190 {h.selector}" for h in lw.heads]
    return [m.label for m in lw.mlps]


def _block_caption(model: CompiledModel, name: str) -> str:
    written = _block_writes(model, name)
    return f"{name}: " + (", ".join(written) if written else "writes nothing (the stream as before)")


def _cell_number(value: float) -> str:
    """Two significant digits without a leading zero ('.67', '-.5', '12'): short enough for a cell."""
    text = f"{value:.2g}"
    return text.replace("0.", ".", 1) if text.startswith(("0.", "-0.")) else text


def plot_residual(
    model: CompiledModel,
    tokens: Sequence[Any],
    path: PathLike = None,
    layer: int | str | None = None,
    *,
    dpi: float = DPI,
) -> Figure:
    """The residual stream on `tokens` (given without BOS) as labelled heatmaps: rows are
    positions ('0 BOS', '1 a', ...), columns the residual directions (`sop:value`), one
    panel per block ('embed', then 'layer_l/attn', 'layer_l/mlp'), each showing the stream
    after that block. A block that writes nothing (a layer without heads or without MLPs)
    gets no panel, which would repeat the one before, unless it is all that was asked for.
    `layer`: an int keeps that layer's panels, a block name just that panel, None all of
    them. One colour scale for all panels, 0 white; entries other than 0 and 1 (numerical
    values, averages) are written in their cells, the cells widened to fit them. Returns
    the Figure."""
    tokens = list(tokens)
    out = model.apply([model.input_encoder.bos_token, *tokens])
    names = list(out.stream)
    if layer is None:
        chosen = names
    elif isinstance(layer, str):
        if layer not in names:
            raise ValueError(f"no block {layer!r}; the blocks are {names}")
        chosen = [layer]
    elif isinstance(layer, int) and 0 <= layer < len(model.weights.layers):
        chosen = [naming.block(layer, "attn"), naming.block(layer, "mlp")]
    else:
        raise ValueError(
            f"layer {layer!r} out of range: the model has layers 0..{len(model.weights.layers) - 1}"
        )
    chosen = [name for name in chosen if _block_writes(model, name)] or chosen[-1:]
    labels = list(out.residual_labels)
    rows = _position_labels(model, tokens)
    data = [np.asarray(out.stream[name], dtype=float) for name in chosen]  # each [seq, d_model]
    cmap, norm = _colour_scale(np.concatenate([d.ravel() for d in data]))  # one scale for every panel
    tick_size, caption_size, number_size, cell_height = 8.0, 9.0, 7.0, 0.22
    numbers = []  # per panel: (row, column, text) of each entry that is not 0 or 1
    for values in data:
        odd = np.argwhere((np.abs(values) > 0.005) & (np.abs(values - 1) > 0.005))
        numbers.append([(r, c, _cell_number(values[r, c])) for r, c in odd] if len(odd) <= 400 else [])
    # Everything below in inches, then turned into figure fractions.
    fig = _new_figure(1.0, 1.0, dpi)
    widest_number = _text_width(fig, [text for panel in numbers for _, _, text in panel], number_size)
    cell_width = max(cell_height, widest_number + 0.06)
    left = 0.5 + _text_width(fig, rows, tick_size)  # the y label, then the tick labels
    below = 0.12 + _text_width(fig, labels, tick_size) + 0.3  # rotated tick labels, then the x label
    title_room, gap, top, right = 0.32, 0.12, 0.45, 1.3
    panel = len(rows) * cell_height
    plot_width = len(labels) * cell_width
    captions = [_block_caption(model, name) for name in chosen]
    title = f"residual stream of {_model_name(model)!r} on {tokens}"
    beside = max(plot_width, _text_width(fig, captions, caption_size))  # the colour bar goes right of this
    width = max(left + beside + right, _text_width(fig, [title], 10) + 0.5)
    left += (width - (left + beside + right)) / 2  # centred under a wider title
    height = top + len(chosen) * (title_room + panel) + (len(chosen) - 1) * gap + below
    fig.set_size_inches(width, height)
    directions = model.layout.directions
    axes, image = [], None
    y = height - top
    for caption, values, written in zip(captions, data, numbers):
        y -= title_room + panel
        ax = fig.add_axes(
            (left / width, y / height, plot_width / width, panel / height), sharex=axes[0] if axes else None
        )
        image = ax.imshow(
            values,
            cmap=cmap,
            norm=norm,
            aspect="auto",
            interpolation="nearest",
        )
        ax.set_yticks(range(len(rows)), labels=rows, fontsize=tick_size)
        ax.set_title(caption, fontsize=caption_size, loc="left", pad=3)
        for x in _block_edges(directions):
            ax.axvline(x, color="black", linewidth=0.5)
        for r, c, text in written:
            ax.text(
                c,
                r,
                text,
                ha="center",
                va="center",
                fontsize=number_size,
                color="white" if _dark(values[r, c], norm) else "black",
            )
        ax.tick_params(axis="x", bottom=False, labelbottom=False)
        axes.append(ax)
        y -= gap
    last = axes[-1]
    last.tick_params(axis="x", bottom=True, labelbottom=True)
    last.set_xticks(range(len(labels)), labels=labels, rotation=90, fontsize=tick_size)
    last.set_xlabel("residual direction")
    fig.text(0.5, 1 - 0.25 / height, title, ha="center", va="center", fontsize=10)
    span_top, span_bottom = height - top - title_room, y + gap
    fig.text(
        (left - _text_width(fig, rows, tick_size) - 0.3) / width,
        (span_top + span_bottom) / 2 / height,
        "position, token",
        rotation=90,
        ha="center",
        va="center",
        fontsize=10,
    )
    bar_height = min(span_top - span_bottom, 3.0)
    bar_bottom = (span_top + span_bottom - bar_height) / 2
    bar = fig.add_axes(
        ((left + beside + 0.2) / width, bar_bottom / height, 0.14 / width, bar_height / height)
    )
    fig.colorbar(image, cax=bar, label="value")
    return _save(fig, path)


def _text_width(fig: Figure, strings: Sequence[str], fontsize: float, **style: Any) -> float:
    """The widest of `strings` at `fontsize`, in inches (measured with fig's renderer)."""
    renderer = fig.canvas.get_renderer()
    widest = 0.0
    for s in strings:
        text = fig.text(0, 0, s, fontsize=fontsize, **style)
        widest = max(widest, text.get_window_extent(renderer).width / fig.dpi)
        text.remove()
    return widest


# ---------------------------------------------------------------------------- selector compositions


GROWTH_STRATEGIES = ("factored", "product_keys", "product_queries", "product_both")


def composition_growth(max_atoms: int = 4) -> dict[str, dict[str, list[int | None]]]:
    """Head widths for the AND and the OR of m = 1..max_atoms atoms `k_j == q_j` over
    two-valued SOps (the growth table of docs/selector_composition.md), per encoding:
    {"AND" | "OR": {encoding: [width, or None where one head on it can't carry it]}}."""
    from rasp_lab.selectors import analyze
    from rasp_lab.selectors.families import and_of_equalities, copies, or_of_equalities

    if not (isinstance(max_atoms, int) and max_atoms >= 1):
        raise ValueError(f"max_atoms must be a positive integer, got {max_atoms!r}")
    out: dict[str, dict[str, list[int | None]]] = {
        op: {s: [] for s in GROWTH_STRATEGIES} for op in ("AND", "OR")
    }
    for m in range(1, max_atoms + 1):
        keys, queries = copies(m, "k"), copies(m, "q")
        conj, disj = and_of_equalities(keys, queries), or_of_equalities(keys, queries)
        values = {s.label: [0, 1] for s in keys + queries}  # the free question: independent SOps
        for op, selector in (("AND", conj), ("OR", disj)):
            widths = analyze(selector, value_sets=values).widths
            for strategy in GROWTH_STRATEGIES:
                out[op][strategy].append(widths[strategy])
    return out


_STRATEGY_STYLE = {
    "factored": dict(color="#1f77b4", marker="o", linestyle="-"),
    "product_keys": dict(color="#ff7f0e", marker="s", linestyle="--"),
    "product_queries": dict(color="#2ca02c", marker="^", linestyle="-."),
    "product_both": dict(color="#d62728", marker="D", linestyle=":"),
}


def plot_composition_growth(path: PathLike = None, max_atoms: int = 4, *, dpi: float = DPI) -> Figure:
    """Head width (query + key directions) against the number of atoms m for the AND and
    the OR of m equality atoms over two-valued SOps, one line per encoding (factored,
    product_keys, product_queries, product_both), log-scale widths; an `x` on the bottom
    edge (the "doesn't fit" row) marks an encoding on which one head can't carry the composition. Coinciding lines
    are nudged sideways a little to stay visible. Returns the Figure."""
    data = composition_growth(max_atoms)
    ms = np.arange(1, max_atoms + 1)
    fig = _new_figure(9.0, 4.2, dpi)
    axes = fig.subplots(1, 2, sharey=True)
    every = [w for op in data.values() for ws in op.values() for w in ws if w is not None]
    low, high = min(every), max(every)
    miss = low / 1.45  # where an `x` marks "one head on this encoding can't carry it"
    for ax, op in zip(axes, ("AND", "OR")):
        for i, strategy in enumerate(GROWTH_STRATEGIES):
            widths = data[op][strategy]
            nudge = (i - (len(GROWTH_STRATEGIES) - 1) / 2) * 0.04
            style = _STRATEGY_STYLE[strategy]
            fits = [(m + nudge, w) for m, w in zip(ms, widths) if w is not None]
            if fits:
                x, y = zip(*fits)
                ax.plot(x, y, label=strategy, markersize=5, linewidth=1.4, **style)
            misses = [m + nudge for m, w in zip(ms, widths) if w is None]
            if misses:
                ax.plot(
                    misses,
                    [miss] * len(misses),
                    linestyle="none",
                    marker="x",
                    color=style["color"],
                    markersize=7,
                    clip_on=False,
                    label=None if fits else strategy,
                )
        ax.set_yscale("log", base=2)
        ax.set_ylim(low / 1.7, high * 1.4)
        ticks = [miss] + [2**e for e in range(int(np.floor(np.log2(low))), int(np.ceil(np.log2(high))) + 1)]
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: "doesn't fit" if y == miss else f"{y:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_locator(FixedLocator(ms))
        ax.set_xlim(0.6, max_atoms + 0.4)
        ax.set_xlabel("atoms m")
        ax.grid(True, which="major", alpha=0.3)
        joiner = " & " if op == "AND" else " | "
        ax.set_title(
            f"{op}: "
            + joiner.join(f"(k{j} == q{j})" for j in range(min(max_atoms, 2)))
            + (joiner + "..." if max_atoms > 2 else ""),
            fontsize=9,
        )
    axes[0].set_ylabel("head width (query + key directions)", fontsize=9)
    handles, labels = axes[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(GROWTH_STRATEGIES), fontsize=8, frameon=False)
    fig.suptitle("one head per composition of m atoms over two-valued SOps: width per encoding", fontsize=10)
    fig.subplots_adjust(left=0.11, right=0.98, top=0.86, bottom=0.22, wspace=0.08)
    return _save(fig, path)
