#!/usr/bin/env bash
# bench/gpu.py on the lent GPU machine, from the repository root:
#
#     bash bench/gpu_device.sh [bench/gpu.py options]
#
# coldbrew is not installed there: it runs from src/ (PYTHONPATH), and the server's packages that
# the machine's python3 lacks (fastapi, pydantic, uvicorn, orjson, jsonschema, ...) travel as
# wheels in .whl/ (see bench/gpu.py's docstring for the download command), installed into
# /tmp/site. Without .whl/ (a machine that has the packages) the install step is skipped.
# PYTHON picks the interpreter (default python3). Results: stdout (the table, then one JSON
# line) and, when $OUT is set, $OUT/gpu.txt, gpu.json, gpu-logs.txt and gpu-run.log.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "installing .whl/ failed"; exit 1; }
    export PYTHONPATH="/tmp/site:$PWD/src"
    echo "installed $(ls .whl/*.whl | wc -l) wheels into /tmp/site"
else
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
    echo "no .whl/: using the interpreter's own packages"
fi
export PYTHONUNBUFFERED=1

if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L
    nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.mem \
        --format=csv
else
    echo "no nvidia-smi"
fi
echo "cores $(nproc), $(free -g | awk '/^Mem:/ {print $2 " GiB memory"}')"
"$PYTHON" - <<'EOF' || exit 1
import sys
import coldbrew, fastapi, pydantic, pydantic_settings, uvicorn, orjson, jsonschema, httpx
import coldbrew.cli.main, coldbrew.api.app, coldbrew.platform
import torch, safetensors
try:
    import torchvision
    vision = torchvision.__version__
except Exception as exc:
    vision = f"does not import ({type(exc).__name__})"
try:
    import httptools
    http = f"httptools {httptools.__version__}"
except ImportError:
    http = "h11 (no httptools)"
print(f"python {sys.version.split()[0]}; torch {torch.__version__} (cuda {torch.version.cuda}, "
      f"available {torch.cuda.is_available()}); torchvision {vision}; safetensors "
      f"{safetensors.__version__}; fastapi {fastapi.__version__}; pydantic {pydantic.__version__}; "
      f"uvicorn {uvicorn.__version__} with {http}; coldbrew from {coldbrew.__file__}")
EOF

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    timeout -s TERM -k 20 400 "$PYTHON" bench/gpu.py "$@" 2> >(tee "$OUT/gpu-run.log" >&2)
else
    timeout -s TERM -k 20 400 "$PYTHON" bench/gpu.py "$@"
fi
