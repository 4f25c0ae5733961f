"""PNG plots with matplotlib's Agg canvas (no pyplot, no display): score vs K, score vs trainable
parameters, gate heatmaps. Figures have a fixed size (PANEL inches per panel at DPI), never cropped,
so a plot's pixel size is known before it is drawn."""

from __future__ import annotations

from pathlib import Path

from unipelt_cli.report import Report, aggregate
from unipelt_cli.report.names import budget_key, budget_label, method_key, method_label, task_key, task_label
from unipelt_cli.report.tables import Image, slug

DPI = 100
PANEL = (4.0, 3.0)  # inches per subplot
LEGEND_WIDTH = 2.2  # inches to the right of the panels, for the legend
MAX_COLS = 4


def figure_size(panels: int, legend: bool = True) -> tuple[int, int]:
    """Pixel (width, height) of a figure with this many panels."""
    cols, rows = min(panels, MAX_COLS), -(-panels // MAX_COLS)
    width = PANEL[0] * cols + (LEGEND_WIDTH if legend else 0.0)
    return round(width * DPI), round(PANEL[1] * rows * DPI)


def _figure(panels: int, legend: bool = True):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = figure_size(panels, legend)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    cols = min(panels, MAX_COLS)
    axes = fig.subplots(-(-panels // MAX_COLS), cols, squeeze=False).ravel()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def _colour(method: str):
    from matplotlib import colormaps

    index = method_key(method)[0]
    return colormaps["tab10"](index % 10)


def _save(fig, path: Path, caption: str, root: Path) -> Image:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    width, height = (round(v * DPI) for v in fig.get_size_inches())
    return Image(path.relative_to(root).as_posix(), caption, (width, height))


def _legend(fig, axes) -> None:
    handles, labels = {}, {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
            labels.setdefault(label, label)
    if handles:
        fig.legend(list(handles.values()), list(labels), loc="outside right upper", fontsize="small")


def score_vs_k(report: Report, backbone: str, root: Path) -> Image | None:
    budgets = sorted({k for b, k in report.tables() if b == backbone}, key=budget_key)
    tasks = sorted({t for b, _, _, t in report.cells if b == backbone}, key=task_key)
    methods = sorted({m for b, _, m, _ in report.cells if b == backbone}, key=method_key)
    if not tasks:
        return None
    fig, axes = _figure(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        for m, method in enumerate(methods):
            dodge = 0.4 * (m / max(len(methods) - 1, 1) - 0.5)  # side by side, so error bars stay apart
            points = [
                (i + dodge, g.mean, g.std or 0.0)
                for i, budget in enumerate(budgets)
                if (g := report.cells.get((backbone, budget, method, task))) is not None and g.mean is not None
            ]
            if not points:
                continue
            xs, ys, sd = zip(*points, strict=True)
            colour = _colour(method)
            ax.errorbar(xs, ys, yerr=sd, marker="o", capsize=3, color=colour, label=method_label(method))
            ax.fill_between(
                xs,
                [y - s for y, s in zip(ys, sd, strict=True)],
                [y + s for y, s in zip(ys, sd, strict=True)],
                color=colour,
                alpha=0.15,
            )
        ax.set_xticks(range(len(budgets)), [budget_label(b) for b in budgets])
        ax.set_xlim(-0.5, len(budgets) - 0.5)
        ax.set_title(task_label(task))
        ax.set_ylabel("test score")
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    name = f"plots/{slug('score-vs-k', backbone)}.png"
    return _save(fig, root / name, f"Score vs K per task ({backbone}), mean ± std over seeds", root)


def score_vs_params(report: Report, backbone: str, budget, root: Path) -> Image | None:
    tasks, methods = report.tasks(backbone, budget), report.methods(backbone, budget)
    if not tasks:
        return None
    fig, axes = _figure(len(tasks))
    for ax, task in zip(axes, tasks, strict=True):
        for method in methods:
            group = report.cells.get((backbone, budget, method, task))
            params = group.result_mean(aggregate.stored_params) if group is not None else None
            if group is None or group.mean is None or not params:
                continue
            ax.errorbar(
                [params], [group.mean], yerr=[group.std or 0.0], marker="o", capsize=3,
                color=_colour(method), label=method_label(method), linestyle="none",
            )  # fmt: skip
        ax.set_xscale("log")
        ax.set_title(task_label(task))
        ax.set_xlabel("stored parameters")
        ax.set_ylabel("test score")
        ax.grid(alpha=0.3, which="both")
    _legend(fig, axes)
    name = f"plots/{slug('score-vs-params', backbone, budget)}.png"
    caption = f"Score vs stored parameters ({backbone}, {budget_label(budget)})"
    return _save(fig, root / name, caption, root)


def gate_heatmap(report: Report, backbone: str, budget, task: str, root: Path) -> Image | None:
    gated = []
    for method in report.methods(backbone, budget):
        group = report.cells.get((backbone, budget, method, task))
        if group is not None:
            split, means = aggregate.gate_means(group)
            if means:
                gated.append((method, split, means))
    if not gated:
        return None
    fig, axes = _figure(len(gated))
    image = None
    for ax, (method, split, means) in zip(axes, gated, strict=True):
        layers = list(means)
        names = sorted({n for values in means.values() for n in values})
        grid = [[means[layer].get(n, float("nan")) for layer in layers] for n in names]
        image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(layers)), [str(layer) for layer in layers])
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("layer")
        ax.set_title(f"{method_label(method)} ({split})", fontsize="medium")
        if len(layers) <= 12:
            for i, row in enumerate(grid):
                for j, value in enumerate(row):
                    if value == value:
                        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(image, ax=list(axes), label="mean gate value")
    name = f"plots/{slug('gates', backbone, budget, task)}.png"
    caption = f"Gate values per layer: {task_label(task)}, {backbone}, {budget_label(budget)}"
    return _save(fig, root / name, caption, root)


def make_all(report: Report, root: Path) -> list[Image]:
    """Every plot, written under ROOT/plots; paths in the returned images are relative to ROOT."""
    images = []
    for backbone in sorted({b for b, _ in report.tables()}):
        images.append(score_vs_k(report, backbone, root))
    for backbone, budget in report.tables():
        images.append(score_vs_params(report, backbone, budget, root))
    for backbone, budget in report.tables():
        for task in report.tasks(backbone, budget):
            images.append(gate_heatmap(report, backbone, budget, task, root))
    return [i for i in images if i is not None]
