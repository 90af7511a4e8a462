# The two commands a fresh machine needs: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Local CPU wheel on the development machines; users with CUDA builds install their own torch first.
TORCH ?= torch==2.13.0

.PHONY: test demo venv lint clean bundled-model bench gpu-check face-model face-pool mesonet

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[train,dev]"
	touch $@

venv: $(BIN)/.installed

test: venv
	$(BIN)/python -m pytest -q -n 2 --dist worksteal

demo: venv
	$(BIN)/python -m benchmarks.demo

# The recipe of the bundled model (runtime/assets/jrc_edge_detect.onnx): the project's own pipeline on landmark
# self-blends of the real-face pool's training people, in two stages: clean faces first (a network learning from
# scratch finds blending traces on clear faces), then the camera's trip grown over three epochs. The threshold is
# chosen on the pool's validation people as cameras see them. 40 minutes to an hour on 2 idle CPU cores; seed 1.
BUNDLE_RUN ?= runs/bundled
$(BUNDLE_RUN)/clean/last.pt: | venv
	$(BIN)/python -m training.train --data pool:3200:camera=off --val pool:600 --encoder edge --input-size 128 \
	    --epochs 12 --batch-size 32 --lr 2e-3 --lambda 0 --warmup 0.5 --threshold fpr:0.01 --workers 1 --threads 1 \
	    --seed 1 --out $(BUNDLE_RUN)/clean
$(BUNDLE_RUN)/onnx/detect.onnx: $(BUNDLE_RUN)/clean/last.pt
	$(BIN)/python -m training.train --data pool:4800:ramp=3 --val pool:900 --init $(BUNDLE_RUN)/clean/last.pt \
	    --epochs 12 --batch-size 32 --lr 1e-3 --lambda 0.1 --warmup 0.5 --threshold fpr:0.01 --workers 1 --threads 1 \
	    --seed 1 --out $(BUNDLE_RUN)
	$(BIN)/python -m export.onnx --ckpt $(BUNDLE_RUN)/best.pt --out $(BUNDLE_RUN)/onnx --graph both

# The threshold is an operating point: at most 1 % of the validation people's real faces (2,000 items, each
# through the camera's trip) called fake. The test people are never used for a choice.
bundled-model: $(BUNDLE_RUN)/onnx/detect.onnx
	$(BIN)/python -m calibration.threshold --onnx $(BUNDLE_RUN)/onnx/detect.onnx --data pool:4000 --split val \
	    --fpr 0.01 --out $(BUNDLE_RUN)/onnx/detect.fpr0.01.onnx
	cp $(BUNDLE_RUN)/onnx/detect.fpr0.01.onnx runtime/assets/jrc_edge_detect.onnx

# The bundled face detector (runtime/assets/mtcnn/): MTCNN's weights from facenet-pytorch's wheel (MIT),
# converted by the project's own code; byte-for-byte reproducible.
FACENET_WHEEL ?= /tmp/fp/facenet_pytorch-2.6.0-py3-none-any.whl
face-model: | venv
	test -f $(FACENET_WHEEL) || $(BIN)/pip download facenet-pytorch==2.6.0 --no-deps -d $(dir $(FACENET_WHEEL))
	$(BIN)/python -m export.faces --wheel $(FACENET_WHEEL) --out runtime/assets/mtcnn
	cd runtime/assets/mtcnn && sha256sum -c SHA256SUMS

# The MesoNet peers (benchmarks/assets/mesonet/): the authors' Keras weights (Apache-2.0, NOTICE kept) converted by
# the project's own code, from a checkout or a bare git directory of their repository at the pinned commit, into
# MESONET_OUT, then compared with the committed copy byte for byte (same torch, onnx and onnxslim versions).
# MESONET_OUT=benchmarks/assets/mesonet rewrites the committed copy.
MESONET_REPO ?= /tmp/MesoNet
MESONET_REV ?= 2144d56a30e48cdcac1976ff13a1c5cdc86376c6
MESONET_OUT ?= runs/mesonet
mesonet: | venv
	test -e $(MESONET_REPO) || git clone --quiet https://github.com/DariusAf/MesoNet $(MESONET_REPO)
	$(BIN)/python -m export.mesonet --repo $(MESONET_REPO) --rev $(MESONET_REV) --out $(MESONET_OUT)
	diff -r $(MESONET_OUT) benchmarks/assets/mesonet && echo "$(MESONET_OUT): benchmarks/assets/mesonet reproduced byte for byte"

# The README's performance tables: latency (fp32, int8-cpu, PyTorch reference) and the pipeline split.
bench: $(BUNDLE_RUN)/onnx/detect.onnx
	$(BIN)/python -m calibration.quantize --onnx $(BUNDLE_RUN)/onnx/detect.onnx --data pool --target cpu
	$(BIN)/python -m benchmarks.latency --engine $(BUNDLE_RUN)/onnx/detect.onnx \
	    --engine $(BUNDLE_RUN)/onnx/detect.int8-cpu.onnx --reference $(BUNDLE_RUN)/best.pt --batch 1,8 \
	    --threads 1 --json $(BUNDLE_RUN)/latency.json --png $(BUNDLE_RUN)/latency.png
	$(BIN)/python -m benchmarks.pipeline --engine $(BUNDLE_RUN)/onnx/detect.onnx --reference $(BUNDLE_RUN)/best.pt \
	    --repeats 5 --threads 1 --json $(BUNDLE_RUN)/pipeline.json
	# the edge encoder at its design size (224 px): untrained, speed does not depend on the weights
	$(BIN)/python -m benchmarks.fixtures --out runs/edge224 --input-size 224 --graph both
	$(BIN)/python -m benchmarks.latency --engine runs/edge224/detect.onnx --reference runs/edge224/model.pt \
	    --batch 1,8 --threads 1 --runs 200 --json runs/edge224/latency.json
	$(BIN)/python -m benchmarks.pipeline --engine runs/edge224/detect.onnx --reference runs/edge224/model.pt \
	    --repeats 5 --threads 1 --json runs/edge224/pipeline.json

# The real-face pool (training/assets/face_pool/): licence-clear photos from two public repositories and two
# public-domain photos, cut by the runtime's own face detector; byte-for-byte reproducible from checkouts of
# debruine/webmorphR.stim (fa8b78f) and cjdowner/interfaces (2166b22).
WEBMORPH ?= webmorphR.stim
INTERFACES ?= interfaces
face-pool: | venv
	$(BIN)/python -m training.face_pool_build --webmorph $(WEBMORPH) --interfaces $(INTERFACES) \
	    --face-px 224 --context 2.6 --out training/assets/face_pool

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# The first session on a machine with an NVIDIA GPU and TensorRT: builds, partial batches, leaks, caches,
# version-compatible plans, INT8 from a cache, DLA on a Jetson; one PASS/FAIL table + runs/gpu_check/gpu_check.json.
gpu-check: venv
	$(BIN)/python -m benchmarks.gpu_check --out runs/gpu_check
