#!/usr/bin/env bash
# Training runs for a CUDA machine: the recipe (whitening), that model fine-tuned end to end, and the two gradient
# losses of the research trained end to end from ImageNet, each capped in minutes. Every run's log, history and
# model file land in $RESULTS. Afterwards, anywhere: the runs side by side, and the euro pairs' scores:
#   .venv/bin/python benchmarks/training_summary.py $RESULTS --name gpu-training
#   .venv/bin/python benchmarks/retrieval.py --skip-baselines --skip-default --models $RESULTS/*.cm ...
#
#   DATA=../shared/data RESULTS=runs/gpu benchmarks/gpu_training.sh
# Knobs (the figures in the README used the defaults): LIMIT (OCRE photos), MINUTES (cap of each gradient run),
# EPOCHS, WORKERS (processes that find the coins and augment), DEVICE (cuda, or cpu for a quick check), PY.
# A quick check on CPU: DEVICE=cpu LIMIT=24 EPOCHS=1 MINUTES=1 WORKERS=2 RESULTS=/tmp/gputest (3 min).
set -u
DATA=${DATA:-../shared/data}
RESULTS=${RESULTS:-runs/gpu}
LIMIT=${LIMIT:-2000}
MINUTES=${MINUTES:-1.8}
EPOCHS=${EPOCHS:-30}
WORKERS=${WORKERS:-12}
DEVICE=${DEVICE:-cuda}
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}  # the project's venv when there is one
mkdir -p "$RESULTS"
TRAIN=("$DATA/ancient-coins/ocre.csv" "$DATA/euro-coins/singles.csv" --type-column denomination --limit "$LIMIT"
       --device "$DEVICE" --workers "$WORKERS")
ROTATION=(--grey --rotations 16 --rings)

run() {  # name, then the train options; its log and its wall time go beside the model
  local name=$1
  shift
  local t0=$SECONDS
  "$PY" -m coinmatch train "${TRAIN[@]}" --out "$RESULTS/$name.cm" "$@" >"$RESULTS/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc, $((SECONDS - t0)) s" | tee -a "$RESULTS/times.txt"
  cp "$RESULTS/$name.train/history.csv" "$RESULTS/$name-history.csv" 2>/dev/null
  tail -3 "$RESULTS/$name.log"
}

nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$RESULTS/device.txt"
# the recipe, as on the CPU (README: "Which model to train")
run recipe --loss whitening "${ROTATION[@]}" --whitening-views 2
# that model, every block fine-tuned by triplet loss, held close to where it began
run recipe-finetuned --init "$RESULTS/recipe.cm" --loss triplet --freeze-blocks 0 --keep 1 --lr 3e-5 \
    --batch-size 128 --epochs "$EPOCHS" --max-minutes "$MINUTES"
# the research's losses, end to end from ImageNet, with the recipe's invariances
run arcface --loss arcface --margin 10 "${ROTATION[@]}" --image-size 224 --freeze-blocks 0 --batch-size 128 \
    --epochs "$EPOCHS" --max-minutes "$MINUTES"
run triplet --loss triplet "${ROTATION[@]}" --image-size 224 --freeze-blocks 0 --batch-size 128 \
    --epochs "$EPOCHS" --max-minutes "$MINUTES"
