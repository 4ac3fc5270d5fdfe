# Peel bot image: `docker build -t peel .` then `docker run --env-file .env -p 8081:8081 -v peel-data:/app/data peel`.
# With no settings it runs on the embedded defaults (the playground on port 8080, local RunPod and Gemini).
FROM python:3.11-slim AS builder
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir "uv==0.13.9"
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY bot ./bot
COPY worker ./worker
COPY storage ./storage
COPY usertext ./usertext
COPY local ./local

FROM python:3.11-slim
# Inside a container the servers listen on every interface so that published ports reach them (`make run` keeps
# 127.0.0.1); links name PUBLIC_BASE_URL, or 127.0.0.1 when it is unset. All three are settable with `docker run -e`.
ENV PYTHONUNBUFFERED=1 PATH="/app/.venv/bin:$PATH" \
    WEB_HOST=0.0.0.0 PLAYGROUND_HOST=0.0.0.0 DATA_DIR=/app/data
RUN useradd --create-home --uid 10001 peel
WORKDIR /app
COPY --from=builder --chown=peel:peel /app /app
# The data directory (ledger, its backup, the link secret, a file store) exists and belongs to the user before it
# is declared a volume, so a fresh named volume starts with that owner and is writable.
RUN mkdir -p /app/data && chown peel:peel /app/data
USER 10001
VOLUME ["/app/data"]
# 8081: links, /healthz and /readyz (WEB_PORT); 8080: the playground, only when DISCORD_TOKEN is unset.
EXPOSE 8080 8081
# Liveness only (/healthz does no I/O): a RunPod or Discord outage must not get the bot restarted. Orchestrators
# route traffic on /readyz. The slim image has no curl; Python's urllib fails the check by raising.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WEB_PORT', '8081'), timeout=4)"]
# SIGTERM (docker stop) stops submitting, leaves chunks running on RunPod to be re-attached by the next start,
# and exits within Docker's 10 s grace.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "bot"]
