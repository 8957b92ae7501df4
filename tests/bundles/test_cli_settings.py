"""Settings given on ``python -m monai.bundle run``'s command line: switches, misspelt names, errors at the end.

Importing MONAI takes most of a bundle run's start, so the command lines of the switch tests run one after the
other in one interpreter, each through ``monai.bundle``'s ``__main__`` (fire parsing ``sys.argv``, as from a
shell); the failing runs are separate processes so that their last lines of stderr can be read.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"

# each boolean of each bundle, with the spellings used for "off" and "on"
OFF = {"synthetic": "FALSE", "fov_crop": "false", "resume": "no", "amp": "0", "nifti": "No", "overwrite": "false",
       "strict": "0", "progress": "False", "lr_only": "no", "sync_batchnorm": "false", "patch_training": "no",
       "lesion_biased_crops": "False", "dual": "no", "overlay_side_by_side": "0"}  # fmt: skip
ON = {"synthetic": "TRUE", "fov_crop": "true", "resume": "yes", "amp": "1", "nifti": "Yes", "overwrite": "true",
      "strict": "1", "progress": "True", "lr_only": "yes", "sync_batchnorm": "true", "patch_training": "YES",
      "lesion_biased_crops": "true", "dual": "Yes", "overlay_side_by_side": "1"}  # fmt: skip
TINY = {
    "exudate_dsm": ["--model_settings#spatial_size", "[96,64]", "--model_settings#net_width", "8"],
    "fundus_lesion_hrdecoder": [
        "--model_settings#net_width", "4", "--model_settings#stage1_channels", "8",
        "--model_settings#stem_channels", "8", "--model_settings#head_channels", "8",
        "--model_settings#hr_scale", "32", "--model_settings#resize_size", "[96,64]",
        "--model_settings#crop_size", "[64,64]",
    ],
}  # fmt: skip
NAMES = "[type(t).__name__ for t in {}.transforms]"
# switches that live in a settings section of train.json, given on the command line by their path
SECTION = {
    "fov_crop": "model_settings#", "patch_training": "model_settings#", "dual": "model_settings#",
    "lr_only": "model_settings#", "lesion_biased_crops": "training_recipe#",
}  # fmt: skip
# switches that describe the model: inference takes them from the model package (here: unpackaged_settings)
MODEL_SWITCHES = ("fov_crop", "lr_only")
RUNNER_SWITCHES = (
    "[@runner.amp, @runner.nifti, @runner.overwrite, @runner.strict, @runner.progress,"
    " @runner.outputs.overlay_side_by_side]"
)
# what each probe records, per bundle and kind of run: (configs, switches, {name: expression})
PROBES = {
    ("exudate_dsm", "train"): (
        ["train.json", "evaluate.json"],
        ["synthetic", "fov_crop", "resume", "amp", "patch_training", "dual"],
        {
            "dual": "[type(@network_def).__name__, @run_name]",
            "synthetic": "os.path.isfile(os.path.join(@checked_dataset_dir, 'synthetic_dataset.json'))",
            "train_transforms": NAMES.format("@train#preprocessing"),
            "eval_transforms": NAMES.format("@validate#preprocessing"),
            "resume": "[h.enabled for h in @train#checkpoint_handlers if type(h).__name__ == 'ResumeHandler']",
            "amp": "[@train#trainer#amp, @validate#evaluator#amp]",
            "inferer": "type(@validate#inferer.inferer).__name__",
        },
    ),
    ("exudate_dsm", "idrid"): (
        ["train.json", "idrid.json"],  # the overlay's own defaults (both off) are overridden the same way
        ["synthetic", "fov_crop"],
        {
            "synthetic": "os.path.isfile(os.path.join(@checked_dataset_dir, 'synthetic_dataset.json'))",
            "train_transforms": NAMES.format("@train#preprocessing"),
        },
    ),
    ("exudate_dsm", "infer"): (
        ["inference.json"],
        ["fov_crop", "amp", "nifti", "overwrite", "strict", "progress", "overlay_side_by_side"],
        {
            "transforms": NAMES.format("@preprocessing"),
            "runner": RUNNER_SWITCHES,
            "outputs": "[@runner.run(@datalist), sorted(os.listdir(@output_dir))][1]",
        },
    ),
    ("fundus_lesion_hrdecoder", "train"): (
        ["train.json", "multi_gpu_train.json"],
        ["synthetic", "resume", "amp", "lr_only", "sync_batchnorm", "lesion_biased_crops"],
        {
            "train_transforms": NAMES.format("@train#preprocessing"),
            "synthetic": "os.path.isfile(os.path.join(@checked_dataset_dir, 'synthetic_dataset.json'))",
            "resume": "[h.enabled for h in @train#checkpoint_handlers if type(h).__name__ == 'ResumeHandler']",
            "amp": "[@train#trainer#amp, @validate#evaluator#amp]",
            "lr_only": "[@network_def.lr_only, @run_name]",
            "sync_batchnorm": "any(isinstance(m, torch.nn.SyncBatchNorm) for m in @network#module.modules())",
        },
    ),
    ("fundus_lesion_hrdecoder", "infer"): (
        ["inference.json"],
        ["lr_only", "amp", "nifti", "overwrite", "strict", "progress", "overlay_side_by_side"],
        {
            "lr_only": "@network_def.lr_only",
            "runner": RUNNER_SWITCHES,
            "outputs": "[@runner.run(@datalist), sorted(os.listdir(@output_dir))][1]",
        },
    ),
}

DRIVER = """
import json, runpy, sys
from monai_exudate.bundle import root_cause
jobs, results, results_file = json.loads(open(sys.argv[1]).read()), [], sys.argv[2]
for argv in jobs:
    sys.argv = ["monai.bundle", *argv]
    try:
        runpy.run_module("monai.bundle", run_name="__main__")
        results.append(None)
    except (Exception, SystemExit) as err:  # fire ends a bad command line with SystemExit
        results.append(f"{type(root_cause(err)).__name__}: {root_cause(err)}")
json.dump(results, open(results_file, "w"))
"""


def _photo(path: Path) -> Path:
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(path)
    return path


def _probe_command(tmp: Path, bundle: str, kind: str, value: str, stand_ins: dict) -> tuple[list[str], Path]:
    configs, switches, record = PROBES[(bundle, kind)]
    root = tmp / f"{bundle}_{kind}_{value}"
    out = root / "probe.txt"
    probe = root / "probe.json"
    root.mkdir(parents=True)
    entries = ", ".join(f"'{name}': {expr}" for name, expr in record.items())
    content = {
        "probe_out": str(out),
        # as the bundles' own initialize: the model description is read while the run's settings are known
        "probe_init": ["$monai_exudate.bundle.start_run()", "@model_description"],
        "probe": f"$open(@probe_out, 'w').write(repr({{{entries}}}))",
    }
    if kind == "train":  # the checkpoint handlers alone, without the trainer and its data
        content.update(stand_ins)
    if kind == "infer":
        content["network"] = "$@network_def"  # an untrained network: no checkpoint needed to see the switches
        content["runner#model_file"] = None  # so there is no model file to record in the output manifest
    probe.write_text(json.dumps(content))
    files = [str(BUNDLES / bundle / "configs" / c) for c in configs] + [str(probe)]
    given = OFF if value == "off" else ON
    argv = ["run", "probe", "--init_id", "probe_init", "--config_file", json.dumps(files)]
    argv += ["--meta_file", str(BUNDLES / bundle / "configs" / "metadata.json")]
    if kind == "infer":  # no model package: the model's settings are given as unpackaged_settings
        tiny = TINY[bundle]
        unpackaged = {tiny[i].split("#")[-1]: json.loads(tiny[i + 1]) for i in range(0, len(tiny), 2)}
        unpackaged.update({name: given[name] for name in switches if name in MODEL_SWITCHES})
        argv += ["--unpackaged_settings", json.dumps(unpackaged)]
    else:
        argv += TINY[bundle]
    for name in switches:
        if kind != "infer" or name not in MODEL_SWITCHES:
            argv += [f"--{SECTION.get(name, '')}{name}", given[name]]
    if kind != "infer":
        (root / "data").mkdir()  # a folder that is used as it is when synthetic is off
        argv += ["--dataset_dir", str(root / "data"), "--synthetic_num", "2", "--synthetic_size", "[160,112]"]
        argv += ["--output_dir", str(root / "out"), "--ckpt_dir", str(root / "models")]
    else:
        _photo(root / "photos" / "a.jpg")
        argv += ["--dataset_dir", str(root / "photos"), "--output_dir", str(root / "out"), "--num_workers", "0"]
        argv += ["--ckpt_dir", str(root / "no_model")]  # not the shipped model's package, whose settings differ
        argv += ["--num_writers", "1", "--formats", "['prob']"]
    return argv, out


@pytest.fixture(scope="module")
def probes(tmp_path_factory, checkpoint_stand_ins) -> dict:
    """Run every probe's command line with every switch off, then on; return what each recorded."""
    tmp = tmp_path_factory.mktemp("switches")
    jobs, outs = [], {}
    for key in PROBES:
        for value in ("off", "on"):
            argv, out = _probe_command(tmp, *key, value, checkpoint_stand_ins)
            jobs.append(argv)
            outs[(*key, value)] = out
    args_file = tmp / "args.json"
    args_file.write_text(json.dumps({"max_epoch": 2}))
    configs = BUNDLES / "exudate_dsm" / "configs"
    jobs.append(["run", "probe", "--args_file", str(args_file), "--config_file", str(configs / "train.json")])
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp / "jobs.json"), str(tmp / "results.json")],
        cwd=REPO, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    results = json.loads((tmp / "results.json").read_text())
    assert results[:-1] == [None] * (len(jobs) - 1), [r for r in results if r]
    recorded = {key: ast.literal_eval(out.read_text()) for key, out in outs.items()}
    return {"recorded": recorded, "args_file_error": results[-1]}


@pytest.mark.parametrize("value", ["off", "on"])
def test_exudate_dsm_training_switches(probes, value):
    seen, on = probes["recorded"][("exudate_dsm", "train", value)], value == "on"
    assert seen["synthetic"] is on  # the synthetic set is generated (its marker written) only when on
    assert ("FieldOfViewCropd" in seen["train_transforms"]) is on
    assert ("FieldOfViewCropd" in seen["eval_transforms"]) is on
    assert seen["resume"] == [on]
    assert seen["amp"] == [on, on] and all(isinstance(a, bool) for a in seen["amp"])
    assert ("RandCropByPosNegLabeld" in seen["train_transforms"]) is on  # patch_training
    assert seen["inferer"] == ("SlidingWindowInferer" if on else "SimpleInferer")
    assert seen["dual"][0] == ("DualBranchNet" if on else "PSPNet") and ("_dual_" in seen["dual"][1]) is on


@pytest.mark.parametrize("value", ["off", "on"])
def test_exudate_dsm_idrid_overlay_switches(probes, value):
    seen, on = probes["recorded"][("exudate_dsm", "idrid", value)], value == "on"
    assert seen["synthetic"] is on
    assert ("FieldOfViewCropd" in seen["train_transforms"]) is on


@pytest.mark.parametrize("value", ["off", "on"])
def test_exudate_dsm_inference_switches(probes, value):
    seen, on = probes["recorded"][("exudate_dsm", "infer", value)], value == "on"
    assert ("FieldOfViewCropd" in seen["transforms"]) is on
    assert seen["runner"] == [on] * 6 and all(isinstance(a, bool) for a in seen["runner"])
    assert ("a_prob.nii.gz" in seen["outputs"]) is on and "a_EX_prob.png" in seen["outputs"]


@pytest.mark.parametrize("value", ["off", "on"])
def test_hrdecoder_training_switches(probes, value):
    seen, on = probes["recorded"][("fundus_lesion_hrdecoder", "train", value)], value == "on"
    assert seen["synthetic"] is on
    assert seen["resume"] == [on]
    assert seen["amp"] == [on, on] and all(isinstance(a, bool) for a in seen["amp"])
    assert seen["lr_only"][0] is on and seen["lr_only"][1].endswith("_lr_only") is on
    assert seen["sync_batchnorm"] is on
    assert ("RandCropByPosNegLabeld" in seen["train_transforms"]) is on  # lesion_biased_crops
    assert ("RandSpatialCropd" in seen["train_transforms"]) is not on


@pytest.mark.parametrize("value", ["off", "on"])
def test_hrdecoder_inference_switches(probes, value):
    seen, on = probes["recorded"][("fundus_lesion_hrdecoder", "infer", value)], value == "on"
    assert seen["lr_only"] is on
    assert seen["runner"] == [on] * 6 and all(isinstance(a, bool) for a in seen["runner"])
    assert ("a_prob.nii.gz" in seen["outputs"]) is on


def test_args_file_settings_are_checked(probes):
    assert probes["args_file_error"].startswith("SettingsError")
    assert "'max_epoch'" in probes["args_file_error"] and "training_recipe#max_epochs" in probes["args_file_error"]


def _failed_run(bundle: str, tmp_path: Path, *extra: str) -> list[str]:
    configs = BUNDLES / bundle / "configs"
    cmd = [
        sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(configs / "train.json"),
        "--meta_file", str(configs / "metadata.json"), "--dataset_dir", str(tmp_path / "data"),
        "--output_dir", str(tmp_path / "out"), "--ckpt_dir", str(tmp_path / "models"), *TINY[bundle], *extra,
    ]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    return result.stderr.strip().splitlines()


def test_misspelt_setting_and_bad_switch_stop_the_run_first(tmp_path):
    lines = _failed_run(
        "exudate_dsm", tmp_path, "--max_epoch", "2", "--model_settings#fov_crop", "maybe", "--synthetic_num", "2"
    )
    tail = "\n".join(lines[-4:])
    assert "'max_epoch'" in tail and "closest: training_recipe#max_epochs" in tail
    assert "'model_settings#fov_crop'" in tail and "'maybe'" in tail
    assert not (tmp_path / "data").exists() and not (tmp_path / "out").exists()  # no work was done


def test_training_reports_every_section_last(tmp_path):
    photo = _photo(tmp_path / "data" / "a.jpg")
    datalist = {
        "training": [{"image": "a.jpg", "EX": None, "HE": None, "SE": None, "MA": "gone_MA.png"}],
        "testing": [{"image": 7}],
    }
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(datalist))
    lines = _failed_run("fundus_lesion_hrdecoder", tmp_path, "--synthetic", "false", "--datalist_file", str(path))
    assert photo.is_file()
    tail = "\n".join(lines[-5:])
    assert "checked_datalist" in tail and "DataCheckError" in tail
    assert "gone_MA.png" in tail and "section 'testing' entry 0 has 'image' 7, not a path" in tail
    assert "Failed to evaluate" not in lines[-1]
