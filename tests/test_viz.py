"""rasp_lab.viz: every figure renders to a PNG with the Agg backend and says what it shows
(labels, tokens, head names), the data drawn is the model's own, and rasp_lab works
without matplotlib."""

import inspect
import os
import subprocess
import sys

import matplotlib
import matplotlib.figure
import numpy as np
import pytest
from matplotlib.colors import TwoSlopeNorm, to_hex
from matplotlib.text import Text
from rasp_lab.programs import registry

import rasp_lab
from rasp_lab import rasp, viz
from rasp_lab.compiler.basis import ONE
from rasp_lab.export import from_arrays, to_arrays
from rasp_lab.selectors import analyze

matplotlib.use("Agg")  # viz draws on Agg canvases itself; this keeps pyplot (used below) headless too

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _frac_program():
    """is_a (layer 0 MLP), prevs (layer 1 head), frac_a (layer 1 attention)."""
    is_a = rasp.numerical(rasp.Map(lambda t: 1 if t == "a" else 0, rasp.tokens)).named("is_a")
    prevs = rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ).named("prevs")
    return rasp.numerical(rasp.Aggregate(prevs, is_a, default=0)).named("frac_a")


@pytest.fixture(scope="module")
def frac_model():
    return rasp_lab.compile(_frac_program(), {"a", "b"}, 4)


@pytest.fixture(scope="module")
def hist_model():
    """A SelectorWidth head (BOS level with the selected keys) in layer 0; BOS spelt <s>."""
    same = rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ).named("same_tok")
    return rasp_lab.compile(rasp.SelectorWidth(same).named("hist"), {"a", "b", "c"}, 4, bos="<s>")


def _png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 2000


def _texts(fig) -> list[str]:
    fig.canvas.draw()  # tick labels are filled in at draw time
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def _has(texts: list[str], *needles: str) -> None:
    for needle in needles:
        assert any(needle in t for t in texts), f"{needle!r} not among the figure's texts {sorted(set(texts))}"


# ---------------------------------------------------------------------------- optional dependency


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_import_rasp_lab_does_not_import_matplotlib():
    result = _run(
        "import sys, rasp_lab, rasp_lab.compiling, rasp_lab.selectors\n"
        "from rasp_lab.programs import registry\n"
        "assert 'matplotlib' not in sys.modules, 'importing rasp_lab imported matplotlib'\n"
    )
    assert result.returncode == 0, result.stderr


def test_viz_without_matplotlib_says_how_to_install():
    result = _run(
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "try:\n"
        "    import rasp_lab.viz\n"
        "except ImportError as err:\n"
        "    print(err)\n"
        "else:\n"
        "    raise SystemExit('rasp_lab.viz imported without matplotlib')\n"
    )
    assert result.returncode == 0, result.stderr
    assert "pip install rasp-lab[viz]" in result.stdout


# ---------------------------------------------------------------------------- program graph


def test_program_graph_of_a_model_is_coloured_by_layer(frac_model, tmp_path):
    path = tmp_path / "graph.png"
    fig = viz.plot_program_graph(frac_model, path)
    _png(path)
    texts = _texts(fig)
    _has(texts, "tokens", "indices", "is_a", "prevs", "frac_a", "layer 0", "layer 1", "embedding", "'frac_a' compiled")
    nodes = {t.get_gid(): t for t in fig.findobj(Text) if t.get_gid()}
    assert set(nodes) == {"tokens", "indices", "is_a", "prevs", "frac_a"}
    fill = {label: to_hex(t.get_bbox_patch().get_facecolor()) for label, t in nodes.items()}
    assert fill["tokens"] == fill["indices"] == viz.EMBEDDING_COLOUR
    assert fill["is_a"] == viz.layer_colour(0)
    assert fill["frac_a"] == fill["prevs"] == viz.layer_colour(1)  # the selector: the layer of its head
    assert len({fill["tokens"], fill["is_a"], fill["frac_a"]}) == 3
    stages = viz.graph_layers(frac_model)
    assert {label: s.layer for label, s in stages.items()} == {
        "tokens": None, "indices": None, "is_a": 0, "prevs": 1, "frac_a": 1,
    }
    assert stages["prevs"].column < stages["frac_a"].column  # the selector sits before its head's output
    _has(texts, "Map, numerical · L0 MLP", "Select · L1 head", "Aggregate, numerical · L1 attn")
    # one arrow per edge
    arrows = [p for p in fig.axes[0].patches if type(p).__name__ == "FancyArrowPatch"]
    assert len(arrows) == frac_model.value_sets.graph.graph.number_of_edges()


def test_program_graph_of_a_program_is_coloured_by_depth(tmp_path):
    program = registry.get("sort").build()
    path = tmp_path / "program.png"
    fig = viz.plot_program_graph(program, path)
    _png(path)
    graph = rasp_lab.build_graph(program)
    texts = _texts(fig)
    _has(texts, *graph.order, "depth 0")
    nodes = {t.get_gid(): t for t in fig.findobj(Text) if t.get_gid()}
    stages = viz.graph_layers(program)
    by_depth: dict[int, set] = {}
    for label, t in nodes.items():
        by_depth.setdefault(stages[label].layer, set()).add(to_hex(t.get_bbox_patch().get_facecolor()))
    assert all(len(colours) == 1 for colours in by_depth.values())
    assert len(set().union(*by_depth.values())) == len(by_depth)  # one colour per depth
    for source, target in graph.graph.edges:
        assert stages[source].column < stages[target].column


def test_program_graph_dot_has_every_label_and_edge(frac_model):
    for subject in (frac_model, _frac_program()):
        dot = viz.program_graph_dot(subject)
        assert dot.startswith('digraph "frac_a" {') and dot.rstrip().endswith("}")
        graph = rasp_lab.build_graph(_frac_program())
        for label in graph.order:
            assert f'"{label}" [label="{label}\\n' in dot
        for source, target in graph.graph.edges:
            assert f'"{source}" -> "{target}";' in dot
        assert dot.count("->") == graph.graph.number_of_edges()
    assert f'fillcolor="{viz.layer_colour(0)}"' in viz.program_graph_dot(frac_model)


def test_program_graph_dot_quotes_labels():
    odd = rasp.Map(lambda t: t, rasp.tokens).named('say "hi" \\ there')
    dot = viz.program_graph_dot(odd)
    assert '"say \\"hi\\" \\\\ there"' in dot
    assert '"tokens" -> "say \\"hi\\" \\\\ there";' in dot


@pytest.mark.parametrize("name", registry.names())
def test_zoo_graphs_run_left_to_right(name):
    program = registry.get(name).build()
    stages = viz.graph_layers(program)
    graph = rasp_lab.build_graph(program)
    assert set(stages) == set(graph.order)
    for source, target in graph.graph.edges:
        assert stages[source].column < stages[target].column
    dot = viz.program_graph_dot(program)
    assert dot.count("->") == graph.graph.number_of_edges()


def test_program_graph_rejects_other_things(tmp_path):
    with pytest.raises(TypeError, match="RASP program"):
        viz.plot_program_graph("sort", tmp_path / "x.png")


# ---------------------------------------------------------------------------- heads


def test_attention_shows_the_heads_pattern(frac_model, tmp_path):
    path = tmp_path / "attention.png"
    tokens = ["a", "b", "b"]
    fig = viz.plot_attention(frac_model, tokens, 1, 0, path)
    _png(path)
    texts = _texts(fig)
    head = frac_model.weights.layers[1].heads[0]
    _has(texts, "frac_a \u2190 prevs", "coldness", "leak", f"{head.coldness:.2f}")
    _has(texts, "key (position, token)", "query (position, token)")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0 BOS", "1 a", "2 b", "3 b"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0 BOS", "1 a", "2 b", "3 b"]
    drawn = np.asarray(ax.images[0].get_array())
    expected = frac_model.apply(["BOS", *tokens]).attention[1][0]
    np.testing.assert_allclose(drawn, expected)
    # by the head's label too
    again = viz.plot_attention(frac_model, tokens, 1, "frac_a", None)
    np.testing.assert_allclose(np.asarray(again.axes[0].images[0].get_array()), expected)


def test_a_long_inputs_attention_stays_readable():
    """Past 10 positions the cells shrink, but no text goes below 7 pt."""
    model = rasp_lab.compile(_frac_program(), {"a", "b"}, 12)
    fig = viz.plot_attention(model, list("abbabaabbab"), 1, 0)
    fig.canvas.draw()
    texts = [t for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
    assert ".09" in [t.get_text() for t in texts]  # query 11 attends keys 1..11: 1/11 each
    small = {t.get_text(): t.get_fontsize() for t in texts if t.get_fontsize() < 7}
    assert not small, small


def test_attention_errors_name_the_heads(frac_model):
    with pytest.raises(ValueError, match="layer 0 has no attention heads"):
        viz.plot_attention(frac_model, ["a"], 0, 0, None)
    with pytest.raises(ValueError, match="out of range"):
        viz.plot_attention(frac_model, ["a"], 7, 0, None)
    with pytest.raises(ValueError, match="frac_a"):
        viz.plot_attention(frac_model, ["a"], 1, 3, None)
    with pytest.raises(ValueError, match="no head 'nope'"):
        viz.plot_qk_table(frac_model, 1, "nope", None)


def test_qk_table_marks_the_selected_cells(frac_model, tmp_path):
    path = tmp_path / "qk.png"
    fig = viz.plot_qk_table(frac_model, 1, 0, path)
    _png(path)
    block = frac_model.weights.layers[1].heads[0]
    texts = _texts(fig)
    _has(texts, "frac_a \u2190 prevs", "coldness", "leak", "table units", *(str(d) for d in block.query + block.key))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(d) for d in block.key]
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(d) for d in block.query]
    np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), block.w_qk)
    selected = viz.qk_selected(frac_model, 1, 0)
    for r, q in enumerate(block.query):
        for c, k in enumerate(block.key):
            is_value_pair = q.name == "indices" and k.name == "indices"
            assert selected[r, c] == (is_value_pair and k.value <= q.value), (str(q), str(k))
    marks = ax.collections[0].get_offsets()
    assert len(marks) == selected.sum()


def test_qk_table_of_a_selector_width_head(hist_model, tmp_path):
    """BOS is level with the selected keys in a SelectorWidth head: still marked."""
    block = hist_model.weights.layers[0].heads[0]
    selected = viz.qk_selected(hist_model, 0, "hist")
    pairs = {(str(block.query[r]), str(block.key[c])) for r, c in np.argwhere(selected)}
    assert pairs == {(f"tokens:{t}", f"tokens:{t}") for t in "abc"}
    assert "tokens:<s>" in [str(d) for d in block.key]
    path = tmp_path / "qk_width.png"
    fig = viz.plot_qk_table(hist_model, 0, "hist", path)
    _png(path)
    _has(_texts(fig), "tokens:<s>", "hist \u2190 same_tok")
    fig = viz.plot_attention(hist_model, ["a", "b", "a"], 0, 0, None)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0 <s>", "1 a", "2 b", "3 a"]


# ---------------------------------------------------------------------------- residual stream


def test_residual_has_a_panel_per_block_that_writes(frac_model, tmp_path):
    """Layer 0 has no head and layer 1 no MLP: their streams would repeat the panel before."""
    path = tmp_path / "residual.png"
    tokens = ["a", "b"]
    fig = viz.plot_residual(frac_model, tokens, path)
    _png(path)
    out = frac_model.apply(["BOS", *tokens])
    assert list(out.stream) == ["embed", "layer_0/attn", "layer_0/mlp", "layer_1/attn", "layer_1/mlp"]
    blocks = ["embed", "layer_0/mlp", "layer_1/attn"]
    texts = _texts(fig)
    _has(texts, "tokens:a", "tokens:b", "indices:0", "is_a", "frac_a", "0 BOS", "position, token")
    _has(texts, *blocks, "frac_a \u2190 prevs")
    assert not any("nothing" in t for t in texts)
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title(loc="left").split(":")[0] for ax in panels] == blocks
    for ax, name in zip(panels, blocks):
        assert [t.get_text() for t in ax.get_yticklabels()] == ["0 BOS", "1 a", "2 b"]
        np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), out.stream[name])
    assert [t.get_text() for t in panels[-1].get_xticklabels()] == frac_model.residual_labels


def test_residual_labels_are_readable(frac_model):
    """Every text at 7 pt or more; the numbers written in cells fit inside them."""
    fig = viz.plot_residual(frac_model, ["a", "b"])
    fig.canvas.draw()  # tick labels are filled in at draw time
    texts = [t for t in fig.findobj(Text) if t.get_text() and t.get_visible()]
    assert len(texts) > 30
    small = {t.get_text(): t.get_fontsize() for t in texts if t.get_fontsize() < 7}
    assert not small, small
    panel = [ax for ax in fig.axes if ax.images][-1]
    numbers = panel.texts
    assert [t.get_text() for t in numbers] == [".5"]  # frac_a at position 2: 1/2
    column = frac_model.residual_labels.index("frac_a")
    left, right = panel.transData.transform([(column - 0.5, 0), (column + 0.5, 0)])[:, 0]
    box = numbers[0].get_window_extent(fig.canvas.get_renderer())
    assert left < box.x0 and box.x1 < right


def test_residual_of_one_layer_or_block(frac_model, tmp_path):
    fig = viz.plot_residual(frac_model, ["b"], tmp_path / "layer1.png", layer=1)
    _png(tmp_path / "layer1.png")
    assert [ax.get_title(loc="left").split(":")[0] for ax in fig.axes if ax.images] == ["layer_1/attn"]
    fig = viz.plot_residual(frac_model, ["b"], None, layer="embed")
    assert [ax.get_title(loc="left").split(":")[0] for ax in fig.axes if ax.images] == ["embed"]
    # asked for by name, a block that writes nothing still gets its panel, and says so
    fig = viz.plot_residual(frac_model, ["b"], None, layer="layer_1/mlp")
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.images]
    assert titles == ["layer_1/mlp: writes nothing (the stream as before)"]
    with pytest.raises(ValueError, match="out of range"):
        viz.plot_residual(frac_model, ["b"], None, layer=2)
    with pytest.raises(ValueError, match="no block"):
        viz.plot_residual(frac_model, ["b"], None, layer="layer_9/mlp")


# ---------------------------------------------------------------------------- colour scales


def _pixel(fig, ax, row: int, col: int) -> str:
    """The rendered colour at the centre of cell (row, col) of `ax`'s image, as hex."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    x, y = ax.transData.transform((col, row))
    return to_hex(rgba[int(rgba.shape[0] - y), int(x)] / 255)


def test_zero_is_white_and_a_scale_without_negatives_is_one_sided(frac_model):
    fig = viz.plot_qk_table(frac_model, 1, 0)
    ax = fig.axes[0]
    norm = ax.images[0].norm
    assert not isinstance(norm, TwoSlopeNorm) and (norm.vmin, norm.vmax) == (0.0, 8.0)
    block = frac_model.weights.layers[1].heads[0]
    one, index_0 = block.query.index(ONE), [str(d) for d in block.key].index("indices:0")
    assert block.w_qk[one, index_0] == 0 and _pixel(fig, ax, one, index_0) == "#ffffff"
    assert _pixel(fig, ax, one, 0) != "#ffffff"  # one's row, BOS key: 1
    assert fig.axes[1].get_ylim() == (0.0, 8.0)  # the colour bar starts at 0

    fig = viz.plot_attention(frac_model, ["a", "b"], 1, 0)
    ax = fig.axes[0]
    assert (ax.images[0].norm.vmin, ax.images[0].norm.vmax) == (0.0, 1.0)
    assert _pixel(fig, ax, 1, 2) == "#ffffff"  # query 1 does not attend key 2
    assert _pixel(fig, ax, 2, 1) != "#ffffff"


def test_values_of_both_signs_get_a_diverging_scale_white_at_zero():
    signed = rasp.numerical(rasp.Map(lambda t: -1 if t == "a" else 2, rasp.tokens)).named("signed")
    model = rasp_lab.compile(signed, {"a", "b"}, 3)
    fig = viz.plot_residual(model, ["a", "b"], layer="layer_0/mlp")
    ax = fig.axes[0]
    norm = ax.images[0].norm
    assert isinstance(norm, TwoSlopeNorm) and (norm.vmin, norm.vcenter, norm.vmax) == (-2.0, 0.0, 2.0)
    column = model.residual_labels.index("signed")
    np.testing.assert_allclose(ax.images[0].get_array()[:, column], [0, -1, 2], atol=1e-6)
    red, green, blue = (int(_pixel(fig, ax, 1, column)[i : i + 2], 16) for i in (1, 3, 5))
    assert blue > red  # -1: blue
    red, green, blue = (int(_pixel(fig, ax, 2, column)[i : i + 2], 16) for i in (1, 3, 5))
    assert red > blue  # 2: red
    assert _pixel(fig, ax, 0, column) == "#ffffff"  # BOS: 0


def test_colour_scale_sides():
    cmap, norm = viz._colour_scale(np.array([-3.0, -1.0, 0.0]))
    assert cmap is viz.NEGATIVE and (norm.vmin, norm.vmax) == (-3.0, 0.0)
    cmap, norm = viz._colour_scale(np.array([2.0, -1e-9, 0.0]))  # float32 noise is no sign
    assert cmap is viz.POSITIVE and (norm.vmin, norm.vmax) == (0.0, 2.0)
    cmap, norm = viz._colour_scale(np.zeros(4))
    assert cmap is viz.POSITIVE and (norm.vmin, norm.vmax) == (0.0, 1.0)
    for scale in (viz.DIVERGING, viz.POSITIVE, viz.NEGATIVE, viz.ATTENTION):
        zero = 0.5 if scale is viz.DIVERGING else 1.0 if scale is viz.NEGATIVE else 0.0
        assert to_hex(scale(zero)) == "#ffffff", scale.name


# ---------------------------------------------------------------------------- composition growth


def test_composition_growth_matches_the_analysis():
    data = viz.composition_growth(3)
    assert data["AND"]["factored"] == [4, 8, 12]
    assert data["OR"]["factored"] == [4, None, None]
    assert data["OR"]["product_both"] == [4, 8, 16]
    k = [rasp.Map(lambda x: x, rasp.tokens, simplify=False).named(f"k{j}") for j in range(2)]
    q = [rasp.Map(lambda x: x, rasp.tokens, simplify=False).named(f"q{j}") for j in range(2)]
    either = rasp.Select(k[0], q[0], rasp.Comparison.EQ) | rasp.Select(k[1], q[1], rasp.Comparison.EQ)
    widths = analyze(either, value_sets={s.label: [0, 1] for s in k + q}).widths
    assert {s: data["OR"][s][1] for s in viz.GROWTH_STRATEGIES} == widths


def test_composition_growth_plot(tmp_path):
    path = tmp_path / "growth.png"
    fig = viz.plot_composition_growth(path, max_atoms=3)
    _png(path)
    texts = _texts(fig)
    _has(texts, "AND", "OR", "atoms m", "doesn't fit", *viz.GROWTH_STRATEGIES)
    assert all(ax.get_yscale() == "log" for ax in fig.axes)
    with pytest.raises(ValueError, match="max_atoms"):
        viz.composition_growth(0)


# ---------------------------------------------------------------------------- figures


def test_figures_stay_out_of_pyplot(frac_model, tmp_path):
    """Nothing is registered with pyplot (nothing to close, no window); path=None saves nothing."""
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = viz.plot_residual(frac_model, ["a"], None)
    viz.plot_qk_table(frac_model, 1, 0, str(tmp_path / "as_str.png"))
    assert plt.get_fignums() == before
    assert type(fig.canvas).__name__ == "FigureCanvasAgg"
    assert [p.name for p in tmp_path.iterdir()] == ["as_str.png"]


def _png_size(path) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG's IHDR chunk."""
    data = path.read_bytes()
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _every_plot(model, path=None, **kwargs):
    """Each public plot_* function on `model`, with `path` (None: no file) and `kwargs`."""
    name = (lambda kind: None) if path is None else (lambda kind: path / f"{kind}.png")
    return {
        "graph": viz.plot_program_graph(model, name("graph"), **kwargs),
        "attention": viz.plot_attention(model, ["a", "b"], 1, 0, name("attention"), **kwargs),
        "qk": viz.plot_qk_table(model, 1, 0, name("qk"), **kwargs),
        "residual": viz.plot_residual(model, ["a", "b"], name("residual"), **kwargs),
        "growth": viz.plot_composition_growth(name("growth"), max_atoms=2, **kwargs),
    }


def test_every_plot_returns_a_figure_without_a_path(frac_model, tmp_path, monkeypatch):
    """For a notebook: no path, nothing written, the Figure back."""
    monkeypatch.chdir(tmp_path)
    figures = _every_plot(frac_model)
    assert all(isinstance(fig, matplotlib.figure.Figure) for fig in figures.values())
    assert all(fig.dpi == viz.DPI for fig in figures.values())
    assert list(tmp_path.iterdir()) == []
    plots = {name for name in viz.__all__ if name.startswith("plot_")}
    assert len(plots) == len(figures)  # a new plot_* function joins _every_plot


def test_dpi_sets_the_saved_pixels(frac_model, tmp_path):
    figures = _every_plot(frac_model, tmp_path, dpi=72)
    for kind, fig in figures.items():
        pixels = np.array(_png_size(tmp_path / f"{kind}.png"))
        np.testing.assert_allclose(pixels, fig.get_size_inches() * 72, atol=1, err_msg=kind)
    big = viz.plot_qk_table(frac_model, 1, 0, tmp_path / "qk_200.png", dpi=200)
    np.testing.assert_allclose(big.get_size_inches(), figures["qk"].get_size_inches(), rtol=0.02)
    pixels = np.array(_png_size(tmp_path / "qk_200.png"))
    np.testing.assert_allclose(pixels, big.get_size_inches() * 200, atol=1)
    with pytest.raises(ValueError, match="dpi must be a positive number of pixels per inch, got 0"):
        viz.plot_attention(frac_model, ["a"], 1, 0, dpi=0)


def test_all_lists_every_public_function_and_class():
    defined = {
        name
        for name, value in vars(viz).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == viz.__name__
    }
    assert set(viz.__all__) == defined
    assert len(viz.__all__) == len(set(viz.__all__))


def test_a_loaded_model_draws_everything(frac_model, tmp_path):
    """A model loaded from a file has weights and layout but no program: its graph is read
    from the weights."""
    loaded = rasp_lab.load(frac_model.save(tmp_path / "frac.npz"))
    fig = viz.plot_residual(loaded, ["a", "b"], tmp_path / "residual.png")
    _png(tmp_path / "residual.png")
    _has(_texts(fig), "'frac_a'", "tokens:a")
    viz.plot_attention(loaded, ["a", "b"], 1, "frac_a", tmp_path / "attention.png")
    _png(tmp_path / "attention.png")
    np.testing.assert_array_equal(viz.qk_selected(loaded, 1, 0), viz.qk_selected(frac_model, 1, 0))
    fig = viz.plot_program_graph(loaded, tmp_path / "graph.png")
    _png(tmp_path / "graph.png")
    texts = _texts(fig)
    _has(texts, "'frac_a' loaded: 2 layers", "graph read from its weights", "selector · L1 head")
    nodes = {t.get_gid() for t in fig.findobj(Text) if t.get_gid()}
    assert nodes == {"tokens", "indices", "is_a", "prevs", "frac_a"}
    arrows = [p for p in fig.axes[0].patches if type(p).__name__ == "FancyArrowPatch"]
    assert len(arrows) == 4
    assert viz.program_graph_dot(loaded).count("->") == 4


def _composes(stages) -> bool:
    return any(s.kind in ("SelectorAnd", "SelectorOr", "SelectorNot") for s in stages.values())


@pytest.mark.parametrize("name", registry.names())
def test_a_loaded_models_graph_is_the_compiled_graph(name):
    """Edge for edge and stage for stage; a composed selector shows as its head's one selector."""
    entry = registry.get(name)
    model = rasp_lab.compile(entry.build(), entry.vocab, entry.max_seq_len, causal=entry.causal)
    loaded = from_arrays(*to_arrays(model))
    compiled, read = viz.graph_layers(model), viz.graph_layers(loaded)
    if not _composes(compiled):
        assert {k: (s.layer, s.column, s.is_selector) for k, s in read.items()} == {
            k: (s.layer, s.column, s.is_selector) for k, s in compiled.items()
        }
        edges = [line for line in viz.program_graph_dot(model).splitlines() if "->" in line]
        assert sorted(line for line in viz.program_graph_dot(loaded).splitlines() if "->" in line) == sorted(edges)
    sops = {k: s.layer for k, s in compiled.items() if not s.is_selector}
    assert {k: s.layer for k, s in read.items() if not s.is_selector} == sops
    heads = {h.selector for lw in loaded.weights.layers for h in lw.heads}
    assert {k for k, s in read.items() if s.is_selector} == heads - set(sops)
