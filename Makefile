# The two commands a fresh machine needs: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Local CPU wheel on the development machines; users with CUDA builds install their own torch first.
TORCH ?= torch==2.13.0

.PHONY: test demo venv lint clean bundled-model bench

$(BIN)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[train,dev]"
	touch $@

venv: $(BIN)/.installed

test: venv
	$(BIN)/python -m pytest -q

demo: venv
	$(BIN)/python -m benchmarks.demo

# The recipe of the bundled model (runtime/assets/jrc_edge_detect.onnx): the project's own pipeline on
# self-blended forgeries of scikit-image's offline faces. About 6 minutes on 2 CPU cores.
BUNDLE_RUN ?= runs/bundled
bundled-model: venv
	$(BIN)/python -m training.train --data synthetic:640 --encoder edge --input-size 128 --epochs 16 \
	    --batch-size 32 --lr 3e-3 --lambda 0.1 --warmup 1 --workers 1 --threads 1 --seed 0 --out $(BUNDLE_RUN)
	$(BIN)/python -m export.onnx --ckpt $(BUNDLE_RUN)/best.pt --out $(BUNDLE_RUN)/onnx --graph both
	cp $(BUNDLE_RUN)/onnx/detect.onnx runtime/assets/jrc_edge_detect.onnx

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
