import subprocess
import sys


def test_plotting_never_touches_pyplot_or_the_backend(tmp_path):
    """A notebook's backend stays as it is: figures are matplotlib.figure.Figure objects."""
    code = ("import sys, matplotlib\n"
            "from ntkit.io.plotting import figure, save_figure\n"
            "import ntkit.tasks.benchmark, ntkit.tasks.mutagenesis, ntkit.tasks.attention\n"
            "fig = figure(figsize=(2, 2)); fig.subplots().plot([1, 2])\n"
            f"save_figure(fig, {str(tmp_path / 'x.png')!r})\n"
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"MPLBACKEND": "svg", "PATH": ""})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"
