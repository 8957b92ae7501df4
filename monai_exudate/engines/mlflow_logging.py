"""Ignite handler that tags the MLflow training run with the model's origin, then logs and registers the model."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from mlflow.entities import RunTag
from PIL import Image

from monai_exudate.bundle.paths import PACKAGE_FILE

__all__ = ["MODEL_ARTIFACT", "MLflowModelHandler", "example_photo"]

logger = logging.getLogger(__name__)

MODEL_ARTIFACT = "model"
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
_REQUIREMENTS = ("monai", "torch", "pytorch-ignite", "numpy", "mlflow", "pillow", "scipy", "pandas", "tqdm")


class MLflowModelHandler:
    """Make the MLflow run of a training a hand-off: tags that say where the model came from, and the model itself.

    - At the first epoch: run tags ``bundle``, ``bundle_version``, ``dataset``, ``synthetic``, ``datalist_sha256``
      and ``git_commit``, from the model package; the experiment is tagged as a model-training one
      (``mlflow.experimentKind``), so MLflow 3's UI opens it on the runs, not on its GenAI view.
    - When training completes: the folders of ``artifact_folders``, sub-folders kept; the model as an MLflow pyfunc
      model (:class:`~monai_exudate.inference.mlflow_pyfunc.FundusLesionModel`: photographs in, per-lesion
      probability maps at the photograph's size out) under the run's ``model`` artifact path, with a signature, an
      input example (a small copy of ``example_image``), the bundle's configs, the weights with their model package
      and this package's code; then, when ``registered_model_name`` is set, a new version of that registered model
      with the package's validation metrics as version tags.

    It uses the run and client of MONAI's ``MLFlowHandler`` (``mlflow_handler``), so it must be attached before that
    handler closes the run: put it before the ``MLFlowHandler`` in the handler list.

    Args:
        mlflow_handler: the training run's MONAI ``MLFlowHandler``.
        bundle_root: the bundle folder whose ``configs`` go into the model.
        ckpt_dir: the folder with ``model.pt``, ``model_package.json`` and (DSM) ``threshold.json``.
        registered_model_name: the registry name (the bundles use their own name); None: log, do not register.
        example_image: a photograph to make the input example from (None: no example).
        artifact_folders: run artifact path -> local folder, logged with their sub-folders when training completes
            (``overlays/epoch_005/...``: MONAI's handler logs a folder's files flat, so each epoch's overlays and PR
            curves would replace the last).
        enabled: False leaves the run as MONAI's handler makes it.
    """

    def __init__(
        self,
        mlflow_handler: Any,
        bundle_root: str | os.PathLike,
        ckpt_dir: str | os.PathLike,
        registered_model_name: str | None = None,
        example_image: str | os.PathLike | None = None,
        artifact_folders: dict[str, str | os.PathLike] | None = None,
        enabled: bool = True,
    ) -> None:
        self.mlflow_handler = mlflow_handler
        self.bundle_root = Path(bundle_root)
        self.ckpt_dir = Path(ckpt_dir)
        self.registered_model_name = registered_model_name or None
        self.example_image = example_image
        self.artifact_folders = {str(k): Path(v) for k, v in (artifact_folders or {}).items()}
        self.enabled = bool(enabled)
        self._trained_this_run = False  # set by the first epoch: a finished run resumed at its end trains none

    def attach(self, engine: Engine) -> None:
        if not self.enabled:
            return
        engine.add_event_handler(Events.STARTED, self.check_bundle_root)
        engine.add_event_handler(Events.EPOCH_STARTED, self.tag_run)
        engine.add_event_handler(Events.COMPLETED, self.log_model)

    def check_bundle_root(self, engine: Engine | None = None) -> None:
        """Refuse a bundle root without ``configs`` before the first epoch: the model is logged only at the end."""
        if not (self.bundle_root / "configs").is_dir():
            raise ValueError(
                f"bundle_root {str(self.bundle_root)!r} has no 'configs' folder, which the MLflow model carries for "
                "its inference: point --bundle_root at the bundle folder (outputs can go elsewhere with --output_dir "
                "and --ckpt_dir), or train with --mlflow_log_model false"
            )

    def _run(self) -> Any:
        run = getattr(self.mlflow_handler, "cur_run", None)
        if run is None:
            raise RuntimeError("the MLflow run is not open: attach MLflowModelHandler before MONAI's MLFlowHandler")
        return run

    def _package(self) -> dict[str, Any]:
        path = self.ckpt_dir / PACKAGE_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise RuntimeError(f"{path}: the model package is needed to describe the model ({err})") from err

    def tag_run(self, engine: Engine | None = None) -> None:
        """Tag the run with the model's origin (once per run)."""
        if self._trained_this_run:
            return
        package = self._package()
        provenance = package.get("provenance") or {}
        tags = {
            "bundle": package.get("bundle"),
            "bundle_version": package.get("version"),
            "dataset": provenance.get("dataset_dir"),
            "synthetic": provenance.get("synthetic"),
            "datalist_sha256": provenance.get("datalist_sha256"),
            "git_commit": provenance.get("git_commit"),
        }
        run = self._run()
        client = self.mlflow_handler.client
        client.log_batch(run.info.run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])
        # MLflow 3's UI opens an experiment on its GenAI (traces) view unless the experiment says it trains models
        client.set_experiment_tag(run.info.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        self._trained_this_run = True

    def log_model(self, engine: Engine | None = None) -> Any:
        """Log the trained model under the run's ``model`` path and register it; return the model version (or None).

        A run that trained no epoch (a re-run of a finished training, which resumes at its end) logs nothing: the model
        is already in the earlier run and the registry.
        """
        if not self._trained_this_run:
            logger.info("no epoch was trained in this run: the model is not logged again")
            return None
        # imported here, not at the top: the pyfunc model pulls in pandas and MLflow's model flavours, which only a
        # training that logs its model needs (engines may import inference: docs/ARCHITECTURE.md, "Layers")
        import mlflow.pyfunc

        from monai_exudate.inference.mlflow_pyfunc import IMAGE_COLUMN, FundusLesionModel, model_signature

        run = self._run()
        client = self.mlflow_handler.client
        for artifact_path, folder in self.artifact_folders.items():
            if folder.is_dir():
                client.log_artifacts(run.info.run_id, str(folder), artifact_path)
        package = self._package()
        lesions = list(package["settings"]["lesions"])
        with tempfile.TemporaryDirectory(prefix="mlflow_model_") as tmp:
            folder = Path(tmp)
            model_dir, bundle_dir = folder / "weights", folder / (package.get("bundle") or "bundle")
            model_dir.mkdir()
            for name in (package.get("weights") or "model.pt", PACKAGE_FILE, package.get("threshold_file")):
                if name and (self.ckpt_dir / name).is_file():
                    shutil.copy2(self.ckpt_dir / name, model_dir / name)
            shutil.copytree(self.bundle_root / "configs", bundle_dir / "configs")
            code = folder / "code" / _PACKAGE_DIR.name
            shutil.copytree(_PACKAGE_DIR, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            example = None
            if self.example_image is not None:
                import pandas as pd

                example = pd.DataFrame({IMAGE_COLUMN: [example_photo(self.example_image)]})
            saved = folder / MODEL_ARTIFACT
            mlflow.pyfunc.save_model(
                path=str(saved),
                python_model=FundusLesionModel(),
                artifacts={"bundle": str(bundle_dir), "model": str(model_dir)},
                code_paths=[str(code)],
                signature=model_signature(lesions),
                input_example=example,
                pip_requirements=_requirements(),
                metadata={
                    "bundle": package.get("bundle"),
                    "bundle_version": package.get("version"),
                    "lesions": lesions,
                    "output": "per-lesion probabilities (float32, 0-1) at each photograph's own size",
                },
            )
            client.log_artifacts(run.info.run_id, str(saved), MODEL_ARTIFACT)
        logger.info("logged the MLflow model under run %s, artifact path %r", run.info.run_id, MODEL_ARTIFACT)
        if self.registered_model_name is None:
            return None
        return self._register(client, run, package)

    def _register(self, client: Any, run: Any, package: dict[str, Any]) -> Any:
        from mlflow.exceptions import MlflowException

        name = self.registered_model_name
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, description=f"{package.get('bundle')} bundle models")
        validation = package.get("validation") or {}
        tags = {k: str(v) for k, v in (validation.get("metrics") or {}).items()}
        tags["validation_epoch"] = str(validation.get("epoch"))
        tags["synthetic"] = str((package.get("provenance") or {}).get("synthetic"))
        source = f"{run.info.artifact_uri.rstrip('/')}/{MODEL_ARTIFACT}"
        version = client.create_model_version(
            name,
            source,
            run_id=run.info.run_id,
            tags=tags,
            description=f"bundle {package.get('bundle')} {package.get('version')}, run {run.info.run_id}",
        )
        logger.info("registered %s version %s", name, version.version)
        return version


def example_photo(path: str | os.PathLike, width: int = 96) -> str:
    """A small copy of the photograph at ``path`` (``width`` pixels wide), PNG bytes base64-encoded."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        height = max(1, round(image.height * width / image.width))
        small = image.resize((width, height), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _requirements() -> list[str]:
    """The model's pip requirements: this environment's versions of what its code imports."""
    pins = []
    for name in _REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins
