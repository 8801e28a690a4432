"""TensorBoard's HParams dashboard for a whole grid, live.

Ray Tune writes hparams only when a trial ends, and SummaryWriter.add_hparams
makes a new sub-folder per call. Instead: the driver writes the experiment
(every factor with its domain of grid values, and the metric tags) once at
the sweep's root, and each trial writes its session (its factor values) into
its own folder when it starts. The metrics are the ordinary scalars the trial
logs anyway, so the dashboard fills in as epochs finish.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from sweep.spec.grid import TrialConfig
from sweep.status import Status

# Scalars each trial logs that the dashboard shows as metrics; STOPPED_TAG only a stopped trial logs (the
# epoch after which its stop rule ended it), so that the dashboard says which sessions stopped, and when.
STOPPED_TAG = "stopped/epoch"
METRIC_TAGS = ("accuracy/test", "loss/test", "loss/train_epoch", "accuracy/val", "loss/val", STOPPED_TAG)
# How a trial's session ends: HParams knows success, failure, running and unknown; a diverged or stopped
# trial did not train to the end (STOPPED_TAG tells a stopped one apart).
SESSION_END = {Status.COMPLETED: "STATUS_SUCCESS", Status.DIVERGED: "STATUS_FAILURE", Status.STOPPED: "STATUS_FAILURE"}


def hparam_values(cfg: TrialConfig) -> dict[str, Any]:
    """The trial's factors as HParams values. HParams has no integer type (a number is a float64), so the
    seed and the gain go as the report writes them ('0'; 'auto', '1', '2.5'): whole numbers stay whole, and
    each is a discrete choice in the dashboard's filter. `gain_value` is the gain the trial used."""
    return {"activation": cfg.activation, "init": cfg.init, "gain": cfg.gain_label, "gain_value": cfg.gain,
            "optimizer": cfg.optimizer, "lr": cfg.lr, "seed": str(cfg.seed), **dict(cfg.optimizer_params)}


def hparam_domains(trials: Iterable[TrialConfig]) -> dict[str, list]:
    """Every factor with the sorted values it takes in the grid."""
    domains: dict[str, set] = {}
    for t in trials:
        for key, value in hparam_values(t).items():
            domains.setdefault(key, set()).add(value)
    return {k: sorted(v) for k, v in domains.items()}


def _summaries(values: dict[str, Any], domains: dict[str, list] | None):
    from torch.utils.tensorboard.summary import hparams

    return hparams(values, dict.fromkeys(METRIC_TAGS, 0.0), hparam_domain_discrete=domains)


def write_experiment(sweep_dir: Path, trials: list[TrialConfig]) -> None:
    """The experiment summary at the sweep's root: factors, their domains, the metric tags."""
    from torch.utils.tensorboard import SummaryWriter

    domains = hparam_domains(trials)
    # The experiment takes each hparam's type from an example value; every
    # trial shares keys and types except optimizer-specific ones, so merge.
    example = {k: v[0] for k, v in domains.items()}
    experiment, _, _ = _summaries(example, domains)
    writer = SummaryWriter(str(sweep_dir))
    writer.file_writer.add_summary(experiment)
    writer.close()


def write_session_start(writer, cfg: TrialConfig) -> None:
    """The trial's session with its factor values, in its own run folder."""
    _, start, _ = _summaries(hparam_values(cfg), None)
    writer.file_writer.add_summary(start)


def write_session_end(writer, cfg: TrialConfig, status: str) -> None:
    """End the session as the trial ended (`status`: a key of SESSION_END)."""
    from tensorboard.plugins.hparams.api_pb2 import Status
    from tensorboard.plugins.hparams.metadata import PLUGIN_DATA_VERSION, PLUGIN_NAME, SESSION_END_INFO_TAG
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData, SessionEndInfo
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata

    status = Status.Value(SESSION_END[status])
    content = HParamsPluginData(session_end_info=SessionEndInfo(status=status), version=PLUGIN_DATA_VERSION)
    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
        plugin_name=PLUGIN_NAME, content=content.SerializeToString()))
    writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=SESSION_END_INFO_TAG, metadata=metadata)]))
