"""mllib.plots: the moving average against a loop, and plots drawn on (and returned with) the given axes."""
from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from mllib.plots import moving_average, plot_learning_curve, plot_meta_training, save_learning_curve

RECORDS = [{"step": s, "loss": 2.0 / s, "accuracy": 0.2 + 0.1 * s, "val_accuracy": 0.5 if s % 2 == 0 else None,
            "seconds": float(s)} for s in range(1, 7)]


@pytest.mark.parametrize("window", [1, 2, 3, 10])
def test_moving_average_is_a_trailing_mean(window):
    values = [3.0, -1.0, 4.0, 1.0, 5.0, 9.0, 2.0]
    by_hand = [sum(values[max(0, i - window + 1): i + 1]) / len(values[max(0, i - window + 1): i + 1])
               for i in range(len(values))]
    assert moving_average(values, window) == pytest.approx(by_hand)
    with pytest.raises(ValueError, match="window"):
        moving_average(values, 0)


def test_plot_meta_training_draws_on_the_given_axes():
    ax = Figure().subplots()
    assert plot_meta_training([4.0, 2.0, 0.5, 0.25], ax=ax, window=2, log_y=True) is ax
    (line,) = ax.get_lines()
    assert line.get_xdata().tolist() == [1, 2, 3, 4] and line.get_ydata().tolist() == [4.0, 3.0, 1.25, 0.375]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "meta-step"


def test_plot_learning_curve_draws_loss_accuracy_validation_and_chance():
    axes = Figure().subplots(1, 2)
    loss_ax, acc_ax = plot_learning_curve(RECORDS, axes=axes, window=1, chance=0.2)
    assert (loss_ax, acc_ax) == tuple(axes)
    assert loss_ax.get_lines()[0].get_ydata().tolist() == pytest.approx([2.0 / s for s in range(1, 7)])
    train, val, chance = acc_ax.get_lines()
    assert val.get_xdata().tolist() == [2, 4, 6] and val.get_ydata().tolist() == [0.5, 0.5, 0.5]
    assert list(chance.get_ydata()) == [0.2, 0.2] and acc_ax.get_ylim() == (0, 1.32)  # legend band above 1
    assert max(acc_ax.get_yticks()) == 1.0
    with pytest.raises(ValueError, match="no records"):
        plot_learning_curve([], axes=Figure().subplots(1, 2))


def test_save_learning_curve_writes_a_png_from_a_run_folder(tmp_path):
    import json
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    path = save_learning_curve(tmp_path, tmp_path / "plots" / "curve.png", title="tiny")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    with pytest.raises(FileNotFoundError, match="metrics"):
        save_learning_curve(tmp_path / "nothing", tmp_path / "x.png")
