"""Static PNG export of report figures: one kaleido/Chromium server for all of a report's
figures (harness.analysis.plots.PngExporter) against plotly's plain ``write_image`` per
figure, which starts a browser each time. Same 6 figures, interleaved rounds. Target:
the shared server is >= 3x faster (measured here: ~0.2 s vs ~3 s a figure)."""
import shutil
import time

import pytest

FIGURES = 6
ROUNDS = 2

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None and shutil.which("google-chrome") is None,
    reason="no Chromium (Debian: apt-get install chromium)")


def figures():
    import plotly.graph_objects as go

    return [go.Figure(go.Scatter(x=list(range(50)), y=[(i * k) % 17 for i in range(50)])) for k in range(FIGURES)]


def export_each(tmp_path):
    import warnings

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, fig in enumerate(figures()):
            fig.write_image(str(tmp_path / f"plain-{i}.png"))
    return time.perf_counter() - start


def export_shared(tmp_path):
    from harness.analysis.plots import PngExporter

    start = time.perf_counter()
    with PngExporter(notice=pytest.fail) as png:
        for i, fig in enumerate(figures()):
            assert png.write(fig, tmp_path / f"shared-{i}.png") is not None
    return time.perf_counter() - start


def test_one_export_server_per_report_vs_one_browser_per_figure(benchmark, tmp_path):
    plain = []

    def setup():
        plain.append(export_each(tmp_path))
        return (tmp_path,), {}

    benchmark.pedantic(export_shared, setup=setup, rounds=ROUNDS, iterations=1)
    shared = benchmark.stats.stats.min
    ratio = min(plain) / shared
    benchmark.extra_info.update({"per_figure_browser_s": min(plain), "shared_server_s": shared, "ratio": ratio,
                                 "figures": FIGURES})
    print(f"\nPNG export of {FIGURES} figures: a browser per figure {min(plain):.2f} s, one server "
          f"{shared:.2f} s (incl. its start), ratio {ratio:.1f}")
    assert ratio >= 3.0, f"one export server was only {ratio:.1f}x faster than a browser per figure"
