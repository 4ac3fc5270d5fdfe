# Peel bot image: `docker build -t peel .` then `docker run --env-file .env peel`.
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
ENV PYTHONUNBUFFERED=1 PATH="/app/.venv/bin:$PATH"
RUN useradd --create-home --uid 10001 peel
WORKDIR /app
COPY --from=builder --chown=peel:peel /app /app
USER 10001
VOLUME ["/app/data"]
EXPOSE 8080 8081
CMD ["python", "-m", "bot"]
