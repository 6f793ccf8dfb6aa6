"""Readable reports of an experiment: each arm's accuracy per window with its
Wilson interval, as a markdown table and as a small SVG plot."""
from irisdag.core.stats import wilson


def arm_series(windows: dict, champion: str, arms) -> dict:
    """version -> [(window, right, n)], from paired counts (every arm judged on the same rows)."""
    series = {champion: []}
    for arm in arms:
        series[arm] = []
    for window in sorted(windows):
        paired = windows[window].get("paired", {})
        for arm in arms:
            w = paired.get(arm)
            if w and w["n"]:
                series[arm].append((window, w["challenger_right"], w["n"]))
        first = next((paired[a] for a in arms if paired.get(a, {}).get("n")), None)
        if first:
            series[champion].append((window, first["champion_right"], first["n"]))
    return series


def accuracy_table(windows: dict, champion: str, arms) -> str:
    series = arm_series(windows, champion, arms)
    names = {champion: f"champion {champion[:8]}"} | {a: f"challenger {a[:8]}" for a in arms}
    lines = ["| window | " + " | ".join(names[v] for v in series) + " |",
             "| --- |" + " --- |" * len(series)]
    for window in sorted(windows):
        cells = []
        for version, points in series.items():
            point = next(((r, n) for w, r, n in points if w == window), None)
            if point is None:
                cells.append("–")
            else:
                lo, hi = wilson(point[0], point[1])
                cells.append(f"{100 * point[0] / point[1]:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] (n={point[1]})")
        lines.append(f"| {window} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def accuracy_svg(windows: dict, champion: str, arms, width: int = 640, height: int = 320) -> str:
    """Accuracy per window, one colour per version, Wilson intervals as bars."""
    series = arm_series(windows, champion, arms)
    order = sorted(windows)
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    left, right, top, bottom = 60, 20, 20, 50
    points = [(r / n, *wilson(r, n)) for pts in series.values() for _, r, n in pts]
    lo_all = min([p[1] for p in points], default=0.5)
    y_min = max(0.0, min(0.8, lo_all) - 0.02)

    def x(i):
        return left + (width - left - right) * (i + 0.5) / max(1, len(order))

    def y(v):
        return top + (height - top - bottom) * (1 - (v - y_min) / (1 - y_min))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for tick in range(0, 6):
        v = y_min + (1 - y_min) * tick / 5
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{100 * v:.0f}%</text>')
    for i, window in enumerate(order):
        out.append(f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">{window[5:]}</text>')
    for k, (version, pts) in enumerate(series.items()):
        colour = colours[k % len(colours)]
        offset = (k - (len(series) - 1) / 2) * 6
        path = []
        for window, r, n in pts:
            i = order.index(window)
            lo, hi = wilson(r, n)
            cx = x(i) + offset
            out.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(lo):.1f}" y2="{y(hi):.1f}" stroke="{colour}"/>')
            out.append(f'<circle cx="{cx:.1f}" cy="{y(r / n):.1f}" r="3" fill="{colour}"/>')
            path.append(f"{cx:.1f},{y(r / n):.1f}")
        if len(path) > 1:
            out.append(f'<polyline points="{" ".join(path)}" fill="none" stroke="{colour}"/>')
        label = ("champion " if version == champion else "challenger ") + version[:8]
        out.append(f'<text x="{left + 10 + 170 * k}" y="{height - 12}" fill="{colour}">● {label}</text>')
    out.append("</svg>")
    return "\n".join(out)


# Dagster's UI renders a markdown metadata value inline only below 1,000 characters
# (longer ones hide behind "[Show Markdown]"): the plot must fit in that.
INLINE_MARKDOWN_LIMIT = 1000


def accuracy_plot_markdown(windows: dict, champion: str, arms, limit: int = INLINE_MARKDOWN_LIMIT) -> str:
    """A small accuracy-per-window plot as a markdown image with an inline (data URI) SVG,
    short enough for the UI to draw it on the comparison's page; the newest windows
    are kept when not all fit."""
    import base64

    order = sorted(windows)
    for keep in range(len(order), 0, -1):
        svg = _compact_svg({w: windows[w] for w in order[-keep:]}, champion, arms)
        text = (f"![accuracy per window ({keep} of {len(order)})]"
                f"(data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()})")
        if len(text) < limit:
            return text
    return "(accuracy plot too large to show inline; see accuracy_by_window)"


def _compact_svg(windows: dict, champion: str, arms, width: int = 320, height: int = 120) -> str:
    series = arm_series(windows, champion, arms)
    order = sorted(windows)
    values = [r / n for pts in series.values() for _, r, n in pts]
    lo = min(values, default=0.5)
    lo = max(0.0, min(lo, 0.9) - 0.02)
    colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]

    def x(i):
        return 30 + (width - 40) * (i + 0.5) / max(1, len(order))

    def y(v):
        return 8 + (height - 30) * (1 - (v - lo) / (1 - lo))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-size="9">'
             f'<rect width="{width}" height="{height}" fill="#fff"/>'
             f'<text x="0" y="{y(1) + 3:.0f}">100%</text><text x="0" y="{y(lo) + 3:.0f}">{100 * lo:.0f}%</text>']
    for k, (version, pts) in enumerate(series.items()):
        colour = colours[k % len(colours)]
        xy = [f"{x(order.index(w)):.0f},{y(r / n):.0f}" for w, r, n in pts]
        if len(xy) > 1:
            parts.append(f'<polyline points="{" ".join(xy)}" fill="none" stroke="{colour}"/>')
        if len(xy) <= 2:
            parts += [f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="3" fill="{colour}"/>' for p in xy]
        name = "champion" if version == champion else "challenger"
        parts.append(f'<text x="{30 + 90 * k}" y="{height - 4}" fill="{colour}">{name} {version[:6]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def window_accuracies(windows: dict, champion: str, arms, window: str) -> dict:
    """This window's accuracy per compared version, as numbers Dagster plots across partitions."""
    out = {}
    for version, pts in arm_series(windows, champion, arms).items():
        for w, r, n in pts:
            if w == window and n:
                role = "champion" if version == champion else f"challenger_{version[:8]}" if len(arms) > 1 else "challenger"
                out[f"{role}_accuracy"] = r / n
    return out
