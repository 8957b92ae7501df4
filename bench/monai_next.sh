#!/usr/bin/env bash
# Try the bundles' start-up on the next MONAI (monai-weekly) in a virtual environment of its own: the evidence for
# widening the "monai<1.7" pin in pyproject.toml. The start-up reads MONAI internals in one module
# (monai_exudate/bundle/monai_internals.py), which warns "... is off" when they moved; any such warning fails here.
#
#   bash bench/monai_next.sh                         # monai-weekly, the newest pre-release
#   MONAI_SPEC="monai==1.6.1" bash bench/monai_next.sh
#
# MONAI_SPEC: what pip installs for MONAI (default monai-weekly, --pre); TORCH_SPEC: torch (default torch==2.13.0);
# VENV: where the environment goes (default a new temporary folder, removed at the end; an existing one is reused).
# Prints PASS/FAIL per step and the MONAI version; exits 1 when a step fails, 2 when the environment cannot be made.
set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MONAI_SPEC=${MONAI_SPEC:-monai-weekly}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
WORK=$(mktemp -d)
VENV=${VENV:-$WORK/venv}
trap 'rm -rf "$WORK"' EXIT
unset PYTHONPATH  # the environment's own packages only

echo "== environment: $VENV ($MONAI_SPEC, $TORCH_SPEC)"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || exit 2
PY=$VENV/bin/python
install() {  # pip's own chatter goes to a log, shown when it fails
    "$PY" -m pip install -q --disable-pip-version-check "$@" >>"$WORK/pip.log" 2>&1 && return 0
    tail -n 20 "$WORK/pip.log"
    echo "FAIL environment: pip install $*"
    exit 2
}
install "$TORCH_SPEC"
install --pre "$MONAI_SPEC"
# the project without its pinned monai: monai-weekly installs the same "monai" package under another name
DEPS=$("$PY" -c 'import sys
try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib
d = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
print("\n".join(x for x in d if not x.startswith("monai")))' "$REPO/pyproject.toml") || exit 2
mapfile -t DEPS <<<"$DEPS"
install "${DEPS[@]}"
install --no-deps -e "$REPO"
if [ "$MONAI_SPEC" = monai-weekly ] && "$PY" -m pip list 2>/dev/null | grep -qiE '^monai +'; then
    echo "FAIL environment: a released monai is installed beside monai-weekly"
    exit 2
fi
VERSION=$("$PY" -c 'import monai; print(monai.__version__)') || exit 2
echo "== MONAI $VERSION ($("$PY" -c 'import monai, os; print(os.path.dirname(monai.__file__))'))"

CONFIGS=bundles/exudate_dsm/configs
TINY=(--meta_file "$CONFIGS/metadata.json" --dataset_dir "$WORK/data" --output_dir "$WORK/out"
      --ckpt_dir "$WORK/models" --synthetic_num 4 --synthetic_size "[160,112]" --model_settings#spatial_size "[96,64]"
      --model_settings#net_width 8 --training_recipe#max_epochs 1 --val_interval 1 --num_workers 0)
FAILED=0

step() {  # step NAME EXPECTED_EXIT(0|nonzero) PATTERN_IN_STDERR -- COMMAND...
    local name=$1 expect=$2 pattern=$3 rc ok=1 start=$SECONDS
    shift 4
    (cd "$REPO" && "$@") >"$WORK/$name.out" 2>"$WORK/$name.err"
    rc=$?
    local took="exit $rc, $((SECONDS - start)) s"
    if [ "$expect" = 0 ] && [ $rc -ne 0 ]; then ok=0; fi
    if [ "$expect" != 0 ] && [ $rc -eq 0 ]; then ok=0; fi
    if [ -n "$pattern" ] && ! grep -qF -- "$pattern" "$WORK/$name.err"; then ok=0; fi
    if grep -q "MonaiInternalsWarning" "$WORK/$name.err"; then ok=0; fi  # a start-up feature is off
    if [ $ok = 1 ]; then
        echo "PASS $name ($took)"
    else
        FAILED=1
        echo "FAIL $name ($took); last lines of its stderr:"
        tail -n 15 "$WORK/$name.err" | sed 's/^/    /'
    fi
    grep -h "MonaiInternalsWarning" "$WORK/$name.err" | sed 's/^/    /'
}

# (a) start-up only: initialise the training run (settings check, error summary, data, network) and read one item
step startup 0 "" -- "$PY" -m monai.bundle run max_epochs --config_file "$CONFIGS/train.json" "${TINY[@]}"
# (b) a misspelt setting is refused before any work, naming it and the closest name
step misspelt_setting nonzero "'max_epoch' is not defined by any config of the run; closest: max_epochs" -- \
    "$PY" -m monai.bundle run training --config_file "$CONFIGS/train.json" "${TINY[@]}" --max_epoch 3
# (c) one epoch of tiny training on the synthetic default set, ending with a checkpoint
rm -rf "$WORK/models" "$WORK/out"
step tiny_training 0 "" -- "$PY" -m monai.bundle run training --config_file "$CONFIGS/train.json" "${TINY[@]}"
if [ ! -f "$WORK/models/model.pt" ]; then
    FAILED=1
    echo "FAIL tiny_training: no $WORK/models/model.pt; models/ holds: $(ls "$WORK/models" 2>&1 | tr '\n' ' ')"
fi

echo "== MONAI $VERSION: $([ $FAILED = 0 ] && echo "every step passed" || echo "a step failed")"
exit $FAILED
