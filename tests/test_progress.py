"""The progress line of long compiles (rasp_lab/progress.py)."""

import io

import pytest

import rasp_lab
from rasp_lab import progress, rasp


def _program():
    return rasp.numerical(
        rasp.Aggregate(
            rasp.Select(rasp.indices, rasp.indices, rasp.Comparison.LEQ),
            rasp.numerical(rasp.Map(lambda t: t / 4, rasp.tokens)),
        )
    ).named("prefix_mean")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_true_writes_each_pass_to_a_log(capsys):
    model = rasp_lab.compile(_program(), vocab={0, 1, 2}, max_seq_len=4, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "compiling prefix_mean: value sets"
    for stage in ("validation", "selector plans", "certificate"):
        assert f"compiling prefix_mean: {stage}" in lines
    assert any(line.startswith("compiling prefix_mean: value sets done (") for line in lines)
    assert lines[-1].startswith("compiling prefix_mean: done in ") and lines[-1].endswith(" s")
    assert model.run([1, 2]) == pytest.approx([0.25, 0.375])


def test_the_default_is_silent_for_a_short_compile_and_off_a_terminal(capsys):
    rasp_lab.compile(_program(), vocab={0, 1, 2}, max_seq_len=4)
    rasp_lab.compile(_program(), vocab={0, 1, 2}, max_seq_len=4, progress=False)
    assert capsys.readouterr().err == ""


def test_a_terminal_gets_one_line_redrawn_after_the_delay(monkeypatch):
    monkeypatch.setattr(progress, "DELAY", 0.0)
    out = Terminal()
    shown = progress.Progress(None, "compiling x", stream=out)
    shown.stage("value sets")
    shown.last_draw = -1.0
    shown.step(3, 6, "some_sop")
    shown.close()
    text = out.getvalue()
    assert "\r" in text and "compiling x: value sets [############............] 3/6 some_sop" in text
    assert text.endswith("\n") and text.count("\n") == 1 and "compiling x: done in " in text


def test_the_default_waits_on_a_terminal(monkeypatch):
    out = Terminal()
    shown = progress.Progress(None, "compiling x", stream=out)
    shown.stage("value sets")
    shown.close()
    assert out.getvalue() == ""


def test_a_progress_flag_that_is_not_a_bool_is_refused():
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        rasp_lab.compile(_program(), vocab={0, 1}, max_seq_len=3, progress="yes")


def test_a_failing_compile_still_ends_its_line(capsys):
    bad = rasp.Map(lambda t: t + 1, rasp.tokens).named("plus")
    with pytest.raises(rasp_lab.ValidationError):
        rasp_lab.compile(
            rasp.numerical(rasp.Aggregate(rasp.Select(rasp.tokens, rasp.tokens, rasp.Comparison.EQ), bad)),
            vocab={0, 1},
            max_seq_len=3,
            progress=True,
        )
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("compiling aggregate") and ": done in " in last
