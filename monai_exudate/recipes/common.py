"""Rules both bundles share: their training and validation handlers, which a rank attaches, and MLflow parameters."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from monai.handlers import MLFlowHandler, StatsHandler

from monai_exudate.engines import (
    AtomicCheckpointSaver,
    MLflowModelHandler,
    ModelPackageWriter,
    NonFiniteOutputHandler,
    OperatingThresholdHandler,
    PRCurveHandler,
    ResumeHandler,
    ResumeState,
    ValidationOverlayHandler,
)
from monai_exudate.utils.booleans import as_bool

__all__ = [
    "checkpoint_handlers",
    "experiment_params",
    "handlers_for_rank",
    "training_main_rank_handlers",
    "validation_handlers",
    "validation_main_rank_handlers",
]


def handlers_for_rank(
    every_rank: Sequence[Any], main_rank_only: Sequence[Any] | None, is_main_rank: bool
) -> list[Any]:
    """The handlers one rank attaches: ``every_rank``, then ``main_rank_only`` on the main rank.

    The configs disable the main-rank-only handlers elsewhere (``_disabled_``), since some must not even be built
    there (an MLflow handler opens the tracking store: two ranks creating one SQLite store collide), so a disabled
    list (None) and disabled entries (None) are left out. Checkpoint savers are built on every rank and attached on
    the main rank only, because Ignite's ``Checkpoint`` runs a collective when it is constructed.
    """
    chosen = list(every_rank) + (list(main_rank_only or []) if is_main_rank else [])
    return [handler for handler in chosen if handler is not None]


def experiment_params(*sections: Mapping[str, Any]) -> dict[str, Any]:
    """One flat dictionary of MLflow parameters from the dictionaries the model package is written from.

    ``sections`` are, in order, the model settings (network and preprocessing), the training recipe and the run's
    own settings (data, seed, precision); a later section does not replace an earlier one's value, so a name keeps
    the meaning the model package gives it. Nested dictionaries are flattened with dotted names.
    """
    params: dict[str, Any] = {}
    for section in sections:
        for name, value in _flat(section):
            params.setdefault(name, value)
    return params


def _flat(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    items: list[tuple[str, Any]] = []
    for name, value in values.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            items.extend(_flat(value, key + "."))
        else:
            items.append((key, value))
    return items


def validation_handlers(
    network: torch.nn.Module,
    ckpt_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    lesions: Sequence[str],
    missing_masks: str = "negative",
    threshold_file: str | os.PathLike | None = None,
    threshold_map_settings: Mapping[str, Any] | None = None,
) -> list[Any]:
    """The validation handlers every rank attaches, the same in both bundles.

    In order: the operating threshold chosen on the validation set (when ``threshold_file`` is given), the metrics
    log, the best-model saver (``model.pt`` in ``ckpt_dir`` on a better key metric), the non-finite output guard and
    the PR curves (``output_dir/pr_curves``). The threshold, saver and PR curves hold set-wide state, so every rank
    attaches them (their metrics are reduced over ranks) and only the main rank writes: Ignite's ``DiskSaver`` saves
    on rank 0, the others write through :func:`~monai_exudate.data.atomic.atomic_write_json` on the main rank.
    """
    handlers: list[Any] = []
    if threshold_file is not None:
        handlers.append(
            OperatingThresholdHandler(
                path=threshold_file, lesion_names=lesions, missing_masks=missing_masks,
                map_settings=dict(threshold_map_settings or {}),
            )
        )
    handlers += [
        StatsHandler(iteration_log=False),
        AtomicCheckpointSaver(
            save_dir=str(ckpt_dir), save_dict={"model": network}, save_key_metric=True, key_metric_filename="model.pt"
        ),
        NonFiniteOutputHandler(),
        PRCurveHandler(output_dir=os.path.join(output_dir, "pr_curves"), lesion_names=lesions,
                       missing_masks=missing_masks),  # fmt: skip
    ]
    return handlers


def validation_main_rank_handlers(
    output_dir: str | os.PathLike,
    lesions: Sequence[str],
    image_mean: Sequence[float],
    image_std: Sequence[float],
    tracking_uri: str,
    experiment_name: str,
    run_name: str,
    num_overlays: int = 4,
) -> list[Any]:
    """The validation handlers of the main rank only: overlays of the first ``num_overlays`` images
    (``output_dir/overlays``) and the validation metrics in the training's MLflow run."""
    return [
        ValidationOverlayHandler(
            output_dir=os.path.join(output_dir, "overlays"),
            lesion_names=lesions,
            num_images=num_overlays,
            image_mean=image_mean,
            image_std=image_std,
        ),
        MLFlowHandler(
            tracking_uri=tracking_uri, experiment_name=experiment_name, run_name=run_name, iteration_log=False
        ),
    ]


def training_main_rank_handlers(
    bundle: str,
    version: str | None,
    bundle_root: str | os.PathLike,
    ckpt_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    datalist: Mapping[str, Sequence[Mapping[str, Any]]],
    run_params: Mapping[str, Any],
    settings: Mapping[str, Any],
    recipe: Mapping[str, Any],
    evaluator: Any,
    loss_output: Callable[[Any], Any],
    tracking_uri: str,
    experiment_name: str,
    run_name: str,
    registered_model_name: str | None,
    model_name: str | None = None,
    resume: bool | str = True,
    log_model: bool | str = True,
) -> list[Any]:
    """The training handlers of the main rank only, the same in both bundles.

    In order: the model package writer (``ckpt_dir/model_package.json`` from ``settings``, ``recipe`` and the run's
    data, sections and seed in ``run_params``, next to ``model.pt`` and ``threshold.json``), the loss log, the MLflow
    model logger (weights, package, threshold, the validation's overlays and PR curves; its input example is the first
    validation image, else the first training one) and the MLflow run handler it logs into, whose parameters are
    :func:`experiment_params` of the same three dictionaries the package is written from.
    """
    sections = [run_params["train_section"], run_params["val_section"]]
    package_path = os.path.join(ckpt_dir, "model_package.json")
    package_writer = ModelPackageWriter(
        path=package_path, bundle=bundle, version=version, dataset_dir=run_params["dataset_dir"],
        synthetic=run_params["synthetic"], datalist=datalist, sections=sections, seed=run_params["seed"],
        settings=settings, recipe=recipe, evaluator=evaluator, threshold_file="threshold.json", resume=resume,
        name=model_name,
    )  # fmt: skip
    mlflow_handler = MLFlowHandler(
        tracking_uri=tracking_uri, experiment_name=experiment_name, run_name=run_name, iteration_log=True,
        epoch_log=True, tag_name="train_loss", output_transform=loss_output, optimizer_param_names="lr",
        experiment_param=experiment_params(settings, recipe, run_params), artifacts=[package_path],
        close_on_complete=True,
    )  # fmt: skip
    example = next((item["image"] for section in reversed(sections) for item in datalist[section]), None)
    return [
        package_writer,
        StatsHandler(tag_name="train_loss", output_transform=loss_output),
        MLflowModelHandler(
            mlflow_handler=mlflow_handler,
            bundle_root=bundle_root,
            ckpt_dir=ckpt_dir,
            registered_model_name=registered_model_name,
            example_image=example,
            artifact_folders={
                "overlays": os.path.join(output_dir, "overlays"),
                "pr_curves": os.path.join(output_dir, "pr_curves"),
            },
            enabled=as_bool(log_model, "mlflow_log_model"),
        ),
        mlflow_handler,
    ]


def checkpoint_handlers(
    network: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any,
    trainer: Any,
    random_transforms: Any,
    evaluator: Any,
    ckpt_dir: str | os.PathLike,
    resume: bool | str,
    is_main_rank: bool,
) -> list[Any]:
    """The handlers that make a run resumable, the same in both bundles.

    An epoch's checkpoint holds the network, optimizer, learning-rate schedule and trainer, and a
    :class:`~monai_exudate.engines.ResumeState` of the random states (global ones and those of
    ``random_transforms``) and the ``evaluator``'s best metric, so a resumed run draws the same crops and keeps the
    same best model. The resume handler loads the newest complete one from ``ckpt_dir`` on every rank when
    ``resume``; the saver keeps the last two epochs' on the main rank. The saver is built on every rank, because
    Ignite's ``Checkpoint`` runs a collective when it is constructed, and attached on the main rank only.
    """
    objects = {
        "model": network,
        "optimizer": optimizer,
        "lr_scheduler": lr_scheduler,
        "trainer": trainer,
        "run_state": ResumeState(transforms=random_transforms, evaluator=evaluator),
    }
    resumer = ResumeHandler(ckpt_dir=ckpt_dir, load_dict=objects, enabled=as_bool(resume, "resume"))
    saver = AtomicCheckpointSaver(
        save_dir=str(ckpt_dir), save_dict=objects, save_interval=1, n_saved=2, epoch_level=True
    )
    return handlers_for_rank([resumer], [saver], is_main_rank)
