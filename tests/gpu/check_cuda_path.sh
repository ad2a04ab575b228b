#!/bin/bash
# The CUDA path on a real GPU, which CI (CPU only) cannot run: bf16, fp16 and 4-bit QLoRA (bitsandbytes)
# one-shot training twice (lineage), the daemon's --once with live inference (and under accelerate launch),
# self-correction files, preference and unlikelihood losses and the promotion gate, --status, --eval, and the
# adapter loaded on a plain base through PEFT; then the test files that train in subprocesses, on the GPU.
#
#     bash tests/gpu/check_cuda_path.sh OUT [WHEELS]      (PY=python, MODES="bf16 fp16 qlora", TEST_S=240)
#
# With WHEELS, a folder of wheels is installed first (no registry needed) into /tmp/site. Uses the
# tiny-random model: run `make models` first, or copy data/models/tiny-random.
OUT=${1:-/tmp/gpuout}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 COLUMNS=200 HF_HUB_OFFLINE=1
PY=${PY:-python3}
if [ -n "$2" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$2"/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch, transformers, peft, pydantic, sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.version.cuda); print('transformers', transformers.__version__, 'peft', peft.__version__, 'pydantic', pydantic.__version__)
import importlib.util; print('bitsandbytes', importlib.util.find_spec('bitsandbytes') is not None)"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
for mode in ${MODES:-bf16 fp16 qlora}; do
  R=/tmp/gpu-$mode; rm -rf $R; mkdir -p $R; L=$OUT/$mode.txt; t0=$SECONDS
  q=false; p=auto; [ $mode = qlora ] && q=true; [ $mode = fp16 ] && p=fp16
  cat > $R/config.json <<JSON
{"model": {"name_or_path": "tiny-random", "cache_dir": "$PWD/data/models", "load_in_4bit": $q},
 "eval_steps": 10, "num_eval_samples": 4, "eval_max_tokens": 48,
 "self_correction": {"min_examples": 2, "generation_interval": 10, "queue": "high", "max_pending_files": 3},
 "experimental": {"preference_weight": 5, "unlikelihood_weight": 1},
 "training": {"batch_size": 4, "save_steps": 1000, "logging_steps": 5, "precision": "$p", "promotion": {"enabled": true}}}
JSON
  run() { echo "### $*" >> $L; timeout 100 $PY train.py "$@" --config $R/config.json >> $L 2>&1; echo "rc=$? ($*)" >> $L; }
  run examples/arithmetic.jsonl          # one-shot, twice: the second continues the first's adapter and step
  run examples/word_problems.jsonl
  cat $R/data/state.json >> $L
  cp examples/arithmetic.jsonl $R/inbox/more.jsonl
  run --once                             # the daemon's lifecycle with live inference and generated files
  run --status
  cp examples/word_problems.jsonl $R/inbox/launched.jsonl   # the same under accelerate launch (world size 1 here)
  echo "### accelerate launch --num_processes 1 train.py --once" >> $L
  timeout 150 $PY -m accelerate.commands.launch --num_processes 1 --num_machines 1 --mixed_precision no \
    --dynamo_backend no train.py --once --config $R/config.json >> $L 2>&1; echo "rc=$? (accelerate launch --once)" >> $L
  run --eval examples/arithmetic.jsonl --limit 8
  echo "### the current adapter on a plain (unquantized) base, through PEFT" >> $L
  timeout 60 $PY -c "
import torch, sys; from transformers import AutoModelForCausalLM; from peft import PeftModel
base = AutoModelForCausalLM.from_pretrained('data/models/tiny-random', dtype=torch.bfloat16).cuda()
m = PeftModel.from_pretrained(base, '$R/data/adapters/current'); ids = torch.tensor([[1, 2, 3, 4]]).cuda()
print('peft load ok', m(ids).logits.shape, next(p for n, p in m.named_parameters() if 'lora_A' in n).dtype)" >> $L 2>&1
  cp $R/logs/events.jsonl $OUT/$mode-events.jsonl 2>/dev/null
  echo "== $mode ($((SECONDS - t0)) s)"
  grep -h -E "^rc=|device |precision|4.bit|quantiz|merged|Traceback|Error|error|peft load|global_step|accuracy [0-9]" $L | cut -c1-220 | sort | uniq -c | sort -rn | head -25
done
if [ "${TEST_S:-240}" -gt 1 ]; then
  timeout ${TEST_S:-240} $PY -m pytest -q -p no:cacheprovider ${TESTS:-tests/test_preference.py tests/test_unlikelihood.py tests/test_monitor.py tests/test_training_precision.py} > $OUT/pytest.txt 2>&1
  echo "pytest rc=$?"; tail -25 $OUT/pytest.txt
fi
