"""Every option value of every command is checked: one `Error:` line, exit 2, nothing written."""
import pytest

from sweep.cli import main

CASES = [
    (["report", "--top", "0"], "Error: sweep report: argument --top: '0' is not a whole number >= 1"),
    (["report", "--top", "-1"], "Error: sweep report: argument --top: '-1' is not a whole number >= 1"),
    (["report", "--dead", "5"], "Error: sweep report: argument --dead: '5' is not a share in 0..1"),
    (["report", "--saturated", "nan"], "Error: sweep report: argument --saturated: 'nan' is not a share in 0..1"),
    (["report", "--vanishing", "-1"], "Error: sweep report: argument --vanishing: '-1' is not a number > 0"),
    (["report", "--exploding", "0"], "Error: sweep report: argument --exploding: '0' is not a number > 0"),
    (["report", "--chance-margin", "2"],
     "Error: sweep report: argument --chance-margin: '2' is not an accuracy margin in 0..0.5"),
    (["run", "x.yaml", "--progress-interval", "0"],
     "Error: sweep run: argument --progress-interval: '0' is not a number of seconds >= 1"),
    (["tensorboard", "--port", "99999"], "Error: sweep tensorboard: argument --port: '99999' is not a TCP port (1..65535)"),
    (["report", "--format", "xml"],
     "Error: sweep report: argument --format: invalid choice: 'xml' (choose from 'table', 'markdown', 'csv', 'json')"),
]


@pytest.mark.parametrize("argv,line", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_a_bad_option_value_is_one_line(argv, line, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == f"{line}; see sweep {argv[0]} --help\n"
    assert list(tmp_path.iterdir()) == []


def test_a_factor_given_twice_is_one_line(recorded_db, capsys, tmp_path):
    db = str(recorded_db / "sweep.db")
    assert main(["report", "--db", db, "--by", "activation,activation"]) == 2
    assert capsys.readouterr().err == "Error: --by 'activation,activation': activation appears twice; give different factors\n"
    out = tmp_path / "plots"
    assert main(["plot", "--db", db, "--heatmap", "init,init", "--out", str(out)]) == 2
    assert capsys.readouterr().err == "Error: --heatmap 'init,init': init appears twice; give different factors\n"
    assert not out.exists()


def test_plot_out_under_a_missing_folder_is_one_line(recorded_db, capsys, tmp_path):
    out = tmp_path / "no" / "plots"
    assert main(["plot", "--db", str(recorded_db / "sweep.db"), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"Error: --out: folder {out} cannot be made: {tmp_path / 'no'} does not exist\n"
    assert list(tmp_path.iterdir()) == []
