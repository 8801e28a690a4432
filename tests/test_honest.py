"""Comparisons that stay honest when trials stop, on a recorded 72-trial sweep like a new user's study (4
activations x 3 inits x 3 optimizer settings x 2 seeds, 5 epochs, stop rules on), made with the tests' own
recorder helper, not trained: no survivor is aggregated alone, and the pictures name the ranking's best and worst."""
import pytest

from sweep.db.engine import make_engine
from sweep.db.series import shown_configurations
from sweep.analysis.report import configuration_ranking, rank_configurations
from sweep.analysis.results import sweep_results
from test_report_db import build

ACTIVATIONS = {"gelu": 0.82, "relu": 0.80, "tanh": 0.78, "sigmoid": 0.5}
INITS = {"default": 0.0, "xavier_uniform": 0.01, "kaiming_normal": -0.01}
OPTIMIZERS = {"sgd-lr0.1": 0.0, "adam-lr0.001": 0.02, "adam-lr0.01": -0.02}
SPEC = {"name": "study", "dataset": "synthetic", "epochs": 5, "stop": {"chance": 2, "asha": {"grace": 1, "reduction": 3}},
        "grid": {"activation": list(ACTIVATIONS), "init": list(INITS),
                 "optimizer": [{"name": "sgd", "lr": 0.1}, {"name": "adam", "lr": [0.001, 0.01]}], "seed": [0, 1]}}
# gelu + xavier + adam 1e-3: its seed 0 the best of the sweep at 0.90, its seed 1 stopped by ASHA at epoch 3.
SURVIVOR = "gelu-xavier_uniform-adam-lr0.001"


def _trials() -> dict:
    trials = {}
    for act, base in ACTIVATIONS.items():
        for init, di in INITS.items():
            for opt, do in OPTIMIZERS.items():
                config = f"{act}-{init}-{opt}"
                for seed in (0, 1):
                    final = base + di + do - 0.01 * seed
                    trials[f"{config}-s{seed}"] = {"accs": [0.1, final - 0.3, final - 0.2, final - 0.1, final - 0.05,
                                                            final]}
                if act == "sigmoid" and opt == "sgd-lr0.1":  # stuck at chance: both seeds stopped after epoch 2
                    for seed in (0, 1):
                        trials[f"{config}-s{seed}"] = {"accs": [0.1, 0.1, 0.1], "status": "stopped",
                                                       "error": "stopped@2 chance"}
    trials[f"{SURVIVOR}-s0"] = {"accs": [0.1, 0.6, 0.7, 0.8, 0.85, 0.9]}
    trials[f"{SURVIVOR}-s1"] = {"accs": [0.1, 0.3, 0.35, 0.4], "status": "stopped", "error": "stopped@3 asha"}
    return trials


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    db = build(tmp_path_factory.mktemp("study"), SPEC, _trials())
    engine = make_engine(f"sqlite:///{db}")
    yield sweep_results(engine, "study", 5)
    engine.dispose()


def test_a_partly_stopped_configuration_does_not_rank_first_by_its_survivor(results):
    assert len(results) == 72
    table = rank_configurations(results, "final_test_acc")
    first = table.iloc[0]
    # Ranked by its surviving seed, the survivor's configuration (0.90) would come first; the best whose
    # seeds all finished does (0.84 and 0.83).
    assert (first["config"], first["status"], first["n"]) == ("gelu-default-adam-lr0.001", "completed", 2)
    assert first["final_test_acc_mean"] == pytest.approx(0.835)
    row = table[table["config"] == SURVIVOR].iloc[0]
    # Both seeds, read at epoch 3 (all its seeds reached it): 0.8 and 0.4, with the stopped configurations.
    assert (row["n"], row["epochs_min"], row["epochs_max"], row["status"]) == (2, 3, 3, "1 completed, 1 stopped")
    assert row["final_test_acc_mean"] == pytest.approx(0.6)
    finished = table[table["status"] == "completed"]
    assert row["rank"] == len(finished) + 1  # first of the stopped, after every configuration that finished


def test_the_pictures_name_the_rankings_best_and_worst(results):
    ranking = configuration_ranking(results, "final_test_acc")
    assert ranking == list(rank_configurations(results, "final_test_acc")["config"])
    shown = shown_configurations(sorted(set(results["label"])), ranking)
    assert shown[:5] == ranking[:5] and shown[-5:] == ranking[-5:]
    # the real worst: the three sigmoid + SGD configurations stuck at chance, and the survivor's
    assert ranking[-3:] == [f"sigmoid-{init}-sgd-lr0.1" for init in INITS]
    assert ranking[-4] == SURVIVOR and SURVIVOR not in shown[:5]
