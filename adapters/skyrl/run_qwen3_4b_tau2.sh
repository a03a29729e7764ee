#!/usr/bin/env bash
# GRPO on tau2 (airline, retail, telecom) for Qwen3-4B-Instruct-2507 with SkyRL + tau-adapters.
#
# Layout (8 GPUs): 6 for SkyRL (FSDP training colocated with vLLM rollout engines), 2 for the
# user-simulator server. Every tau-adapters setting is an environment variable (see README.md);
# everything after the script's name goes to SkyRL as extra key=value overrides.
set -euo pipefail

MODEL=${MODEL:-Qwen/Qwen3-4B-Instruct-2507}          # policy (HF id or local folder)
USER_MODEL_DIR=${USER_MODEL_DIR:-$MODEL}             # the simulated customer
USER_PORT=${USER_PORT:-30001}
DATA_DIR=${DATA_DIR:-$HOME/data/tau2}
TRAIN_GPUS=${TRAIN_GPUS:-6}
USER_GPUS=${USER_GPUS:-2}

# 1. Datasets: SkyRL Parquet rows (data_source, prompt, env_class=tau2, reward_spec, extra_info).
mkdir -p "$DATA_DIR"
tau-adapters tasks export --domain airline,retail,telecom --split train --format skyrl \
  --output "$DATA_DIR/train.parquet"
tau-adapters tasks export --domain airline,retail,telecom --split test --format skyrl \
  --output "$DATA_DIR/test.parquet"

# 2. The user simulator: an OpenAI-compatible vLLM server on its own GPUs.
CUDA_VISIBLE_DEVICES=$(seq -s, "$TRAIN_GPUS" $((TRAIN_GPUS + USER_GPUS - 1))) \
  vllm serve "$USER_MODEL_DIR" --port "$USER_PORT" --data-parallel-size "$USER_GPUS" \
  --served-model-name user-sim > /tmp/user-sim.log 2>&1 &
until curl -sf "http://127.0.0.1:$USER_PORT/health" > /dev/null; do sleep 5; done

# 3. tau-adapters settings (forwarded into SkyRL's Ray entrypoint by tau_adapters.skyrl.entrypoint).
export TAU_ADAPTERS_USER="openai:http://127.0.0.1:$USER_PORT/v1"
export TAU2_USER_MODEL=user-sim
export TAU2_USER_TEMPERATURE=${TAU2_USER_TEMPERATURE:-0.7}
export TAU2_MAX_STEPS=${TAU2_MAX_STEPS:-100}
export TAU_ADAPTERS_PARSER=${TAU_ADAPTERS_PARSER:-hermes}            # Qwen3's <tool_call> format
export TAU_ADAPTERS_REWARD=${TAU_ADAPTERS_REWARD:-partial}           # official reward kept
export TAU_ADAPTERS_ON_MALFORMED=${TAU_ADAPTERS_ON_MALFORMED:-observe}

# 4. SkyRL. max_turns: SkyRL's default of 1 would cut every episode after one model turn.
#    max_prompt_length is the *whole conversation* (SkyRL stops the loop past it): the system
#    prompts alone are ~4.8k (airline, retail) and ~7.1k (telecom) Qwen3 tokens.
CUDA_VISIBLE_DEVICES=$(seq -s, 0 $((TRAIN_GPUS - 1))) \
python -m tau_adapters.skyrl.entrypoint \
  data.train_data="['$DATA_DIR/train.parquet']" \
  data.val_data="['$DATA_DIR/test.parquet']" \
  environment.env_class=tau2 \
  environment.skyrl_gym.max_env_workers=32 \
  trainer.algorithm.advantage_estimator=grpo \
  trainer.policy.model.path="$MODEL" \
  trainer.strategy=fsdp \
  trainer.placement.colocate_all=true \
  trainer.placement.policy_num_gpus_per_node="$TRAIN_GPUS" \
  trainer.placement.ref_num_gpus_per_node="$TRAIN_GPUS" \
  generator.inference_engine.backend=vllm \
  generator.inference_engine.run_engines_locally=true \
  generator.inference_engine.num_engines="$TRAIN_GPUS" \
  generator.inference_engine.tensor_parallel_size=1 \
  generator.inference_engine.gpu_memory_utilization=0.7 \
  generator.inference_engine.weight_sync_backend=nccl \
  generator.batched=false \
  generator.use_conversation_multi_turn=true \
  generator.max_turns=30 \
  generator.n_samples_per_prompt=8 \
  generator.eval_n_samples_per_prompt=4 \
  generator.sampling_params.max_generate_length=1024 \
  generator.max_input_length=32768 \
  trainer.max_prompt_length=8192 \
  trainer.epochs=10 \
  trainer.train_batch_size=32 \
  trainer.policy_mini_batch_size=32 \
  trainer.micro_forward_batch_size_per_gpu=2 \
  trainer.micro_train_batch_size_per_gpu=2 \
  trainer.policy.optimizer_config.lr=1.0e-6 \
  trainer.algorithm.use_kl_loss=true \
  trainer.eval_before_train=true \
  trainer.eval_interval=5 \
  trainer.eval_batch_size=100 \
  trainer.dump_eval_results=true \
  trainer.ckpt_interval=10 \
  trainer.logger=console \
  trainer.project_name=tau2 \
  trainer.run_name=qwen3_4b_tau2_grpo \
  "$@"
