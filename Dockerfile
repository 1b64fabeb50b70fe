# One image for every bai-sweep service (api, worker, dashboard, migrations) and the Ray nodes.
FROM python:3.11-slim

# The CPU build of torch by default; pass --build-arg TORCH_INDEX_URL=.../whl/cu128 for GPUs.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    HF_DATASETS_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    BAI_SWEEP_DATA_DIR=/data

WORKDIR /app

# Dependencies first (cached while only the code changes): torch pinned from the CPU index,
# then the rest with the tested pins.
COPY constraints.txt ./
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==$(grep '^torch==' constraints.txt | cut -d= -f3)"
COPY pyproject.toml README.md ./
COPY service ./service
COPY sweeps ./sweeps
COPY storage ./storage
COPY evaluators ./evaluators
RUN pip install -c constraints.txt .

RUN useradd --create-home --uid 1000 bai && mkdir -p /data && chown bai /data
USER bai
VOLUME ["/data"]

EXPOSE 8000 8080
CMD ["bai-sweep", "serve", "--host", "0.0.0.0"]
