#!/usr/bin/env bash
# GRPO on tau2 (airline, retail, telecom) for Qwen3-4B-Instruct-2507 with slime + tau-adapters.
#
# Layout (8 GPUs): 6 for training/rollout (colocated), 2 for the user-simulator SGLang server.
# Edit the paths below; every tau-adapters setting is an environment variable (see README.md).
set -euo pipefail

SLIME_DIR=${SLIME_DIR:-/root/slime}
MEGATRON_DIR=${MEGATRON_DIR:-/root/Megatron-LM}
MODEL_DIR=${MODEL_DIR:-/root/Qwen3-4B-Instruct-2507}           # HF checkpoint (also the tokenizer)
TORCH_DIST_DIR=${TORCH_DIST_DIR:-/root/Qwen3-4B-Instruct-2507_torch_dist}
SAVE_DIR=${SAVE_DIR:-/root/Qwen3-4B-Instruct-2507_tau2}
DATA_DIR=${DATA_DIR:-/root/tau2-data}
USER_MODEL_DIR=${USER_MODEL_DIR:-$MODEL_DIR}                   # the simulated customer
USER_PORT=${USER_PORT:-30001}
TRAIN_GPUS=${TRAIN_GPUS:-6}
USER_GPUS=${USER_GPUS:-2}

# 1. Datasets: one JSON line per task reference, in slime's format ({"input", "metadata"}).
mkdir -p "$DATA_DIR"
tau-adapters tasks export --domain airline,retail,telecom --split train --format slime \
  --output "$DATA_DIR/train.jsonl"
# Evaluation: one dataset per domain, so slime reports pass^1 per domain (not one pooled mean).
for domain in airline retail telecom; do
  tau-adapters tasks export --domain "$domain" --split test --format slime \
    --output "$DATA_DIR/test_$domain.jsonl"
done

# 2. The user simulator: an OpenAI-compatible SGLang server on its own GPUs.
CUDA_VISIBLE_DEVICES=$(seq -s, "$TRAIN_GPUS" $((TRAIN_GPUS + USER_GPUS - 1))) \
  python -m sglang.launch_server --model-path "$USER_MODEL_DIR" --port "$USER_PORT" \
  --dp-size "$USER_GPUS" --served-model-name user-sim > /tmp/user-sim.log 2>&1 &
until curl -sf "http://127.0.0.1:$USER_PORT/health" > /dev/null; do sleep 5; done

# 3. tau-adapters settings (read by tau_adapters.slime in the rollout process).
export TAU_ADAPTERS_USER="openai:http://127.0.0.1:$USER_PORT/v1"
export TAU2_USER_MODEL=user-sim
export TAU2_USER_TEMPERATURE=${TAU2_USER_TEMPERATURE:-0.7}
export TAU2_MAX_STEPS=${TAU2_MAX_STEPS:-100}
export TAU_ADAPTERS_MAX_NEW_TOKENS=${TAU_ADAPTERS_MAX_NEW_TOKENS:-1024}   # per model turn
export TAU_ADAPTERS_REWARD=${TAU_ADAPTERS_REWARD:-partial}               # official reward kept
# The dynamic-sampling filter below (tau_adapters.slime.dynamic_filter) reads the same shaped
# reward that training uses; slime's check_reward_nonzero_std would read the official 0/1 reward
# and drop all-zero groups that partial credit can still learn from. Leave --reward-key unset.
export TAU_ADAPTERS_ON_MALFORMED=${TAU_ADAPTERS_ON_MALFORMED:-observe}
export TAU_ADAPTERS_THUNDERAGENT=${TAU_ADAPTERS_THUNDERAGENT:-0}         # 1 behind ThunderAgent

source "$SLIME_DIR/scripts/models/qwen3-4B-Instruct-2507.sh"           # MODEL_ARGS

ray start --head --num-gpus "$TRAIN_GPUS" --disable-usage-stats
ENV_VARS=$(MEGATRON_DIR="$MEGATRON_DIR" python - <<'PY'
import json, os
keep = {k: v for k, v in os.environ.items() if k.startswith(("TAU2_", "TAU_ADAPTERS_"))}
keep.update({"PYTHONPATH": os.environ["MEGATRON_DIR"], "CUDA_DEVICE_MAX_CONNECTIONS": "1"})
print(json.dumps({"env_vars": keep}))
PY
)

cd "$SLIME_DIR"
ray job submit --address=http://127.0.0.1:8265 --runtime-env-json="$ENV_VARS" -- \
  python3 train.py \
  --actor-num-nodes 1 --actor-num-gpus-per-node "$TRAIN_GPUS" --colocate \
  --rollout-num-gpus "$TRAIN_GPUS" --rollout-num-gpus-per-engine 1 \
  "${MODEL_ARGS[@]}" \
  --hf-checkpoint "$MODEL_DIR" --ref-load "$TORCH_DIST_DIR" --load "$SAVE_DIR" --save "$SAVE_DIR" \
  --save-interval 20 \
  --prompt-data "$DATA_DIR/train.jsonl" --input-key input --metadata-key metadata \
  --rollout-shuffle --num-rollout 300 --rollout-batch-size 32 --n-samples-per-prompt 8 \
  --rollout-max-response-len 16384 --rollout-max-context-len 32768 \
  --rollout-temperature 1.0 --rollout-top-p 1.0 \
  --global-batch-size 256 --balance-data \
  --dynamic-sampling-filter-path tau_adapters.slime.dynamic_filter \
  --custom-generate-function-path tau_adapters.slime.generate \
  --custom-reward-post-process-path tau_adapters.slime.reward_post_process \
  --eval-interval 10 --eval-prompt-data airline "$DATA_DIR/test_airline.jsonl" \
  retail "$DATA_DIR/test_retail.jsonl" telecom "$DATA_DIR/test_telecom.jsonl" \
  --n-samples-per-eval-prompt 4 --eval-max-response-len 16384 \
  --advantage-estimator grpo --use-kl-loss --kl-loss-coef 0.0 --kl-loss-type low_var_kl \
  --eps-clip 0.2 --eps-clip-high 0.28 \
  --optimizer adam --lr 1e-6 --lr-decay-style constant --weight-decay 0.1 \
  --adam-beta1 0.9 --adam-beta2 0.98 \
  --tensor-model-parallel-size 2 --sequence-parallel --use-dynamic-batch-size \
  --max-tokens-per-gpu 16384 --recompute-granularity full --recompute-method uniform \
  --recompute-num-layers 1 --sglang-mem-fraction-static 0.7 \
  --attention-dropout 0.0 --hidden-dropout 0.0 --accumulate-allreduce-grads-in-fp32 \
  --attention-softmax-in-fp32 --attention-backend flash
