"""A researcher's own project folder never breaks a sweep: files named models.py, db.py and sweep.py there (the
commonest names in an ML project) are never imported by the driver or by a trial worker."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sweep_process import ENV

# Each user file, when imported, leaves a mark and fails loudly, as a user's own module with other contents would.
USER_FILE = """from pathlib import Path
Path(__file__).with_suffix(".imported").write_text("imported")
raise ImportError("the user's own {name}.py was imported")
"""
README = Path(__file__).resolve().parent.parent / "README.md"


def readme_snippet() -> str:
    """The README's Python example, on this test's sweep, printing what it read last."""
    block = README.read_text().split("```python\n", 1)[1].split("```", 1)[0]
    return block.replace("fashion-activations", "mine") + (
        'print(len(trials), sorted(trials["status"]), len(curves), sorted(stats["layer"].unique())[:2])\n')
SWEEP = str(Path(sys.executable).parent / "sweep")  # the console script, as a user runs it


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A user's folder holding models.py, db.py and sweep.py of its own, and a sweep run from it."""
    folder = tmp_path_factory.mktemp("project")
    for name in ("models", "db", "sweep"):
        (folder / f"{name}.py").write_text(USER_FILE.format(name=name))
    spec = {"name": "mine", "dataset": {"name": "synthetic", "train_limit": 256, "test_limit": 64}, "epochs": 1,
            "grid": {"activation": ["relu", "tanh"], "optimizer": [{"name": "adam", "lr": 0.01}]}}
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    run = subprocess.run([SWEEP, "run", "spec.yaml"], cwd=folder, env=ENV, capture_output=True, text=True,
                         timeout=300)
    return folder, run


def _imported(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.imported"))


def test_a_sweep_runs_from_a_folder_with_models_db_and_sweep_of_its_own(project):
    folder, run = project
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "2/2 done" in run.stdout
    assert _imported(folder) == []


def test_report_runs_there(project):
    folder, _ = project
    report = subprocess.run([SWEEP, "report", "--spec", "spec.yaml", "--format", "csv"], cwd=folder, env=ENV,
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert sorted(line.split(",")[2] for line in report.stdout.splitlines()[1:]) == ["relu", "tanh"]
    assert _imported(folder) == []


def test_the_readme_python_snippet_runs_there(project):
    folder, _ = project
    (folder / "snippet.py").write_text(readme_snippet())
    # Python puts a script's own folder first: a sweep.py there is the `sweep` a plain `python` imports (as a
    # numpy.py would be numpy), so the README says to run such a script with -P. models.py and db.py never matter.
    safe = subprocess.run([sys.executable, "-P", "snippet.py"], cwd=folder, env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert safe.returncode == 0, safe.stderr
    assert safe.stdout.splitlines()[-1] == "2 ['completed', 'completed'] 4 ['conv1', 'conv2']"
    assert _imported(folder) == []
    beside = folder / "without-sweep-py"
    beside.mkdir()
    for name in ("models.py", "db.py", "snippet.py"):
        shutil.copy(folder / name, beside / name)
    shutil.copytree(folder / "runs", beside / "runs")
    plain = subprocess.run([sys.executable, "snippet.py"], cwd=beside, env=ENV, capture_output=True, text=True,
                           timeout=120)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.splitlines()[-1] == "2 ['completed', 'completed'] 4 ['conv1', 'conv2']"
    assert _imported(beside) == []
