# The dcgan sampling service: onnxruntime + Starlette/uvicorn, no TensorFlow.
#   docker build -t dcgan . && docker run --rm -p 8000:8000 dcgan
#   curl 'http://127.0.0.1:8000/v1/sample?n=25&seed=7' -o grid.png
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# Only what the runtime needs: the package, its pins, the shipped model (models/generator.onnx) and
# the browser page served at / (examples/web, with onnxruntime-web's files where `npm ci` put them).
COPY pyproject.toml constraints.txt README.m[d] /src/
COPY dcgan_export/ /src/dcgan_export/
COPY trainer/ /src/trainer/
COPY models/ /src/models/
COPY examples/web/ /src/examples/web/
# The [serve] extra on top of the base runtime; constraints.txt keeps the tested versions, and
# the [train] extra (TensorFlow) is never installed. The check runs against the installed copy.
RUN test -f /src/models/generator.onnx \
    && python -m pip install --no-cache-dir --root-user-action=ignore -c /src/constraints.txt "/src[serve]" \
    && rm -rf /src \
    && python -c "import dcgan_export.runtime as r; print('shipped model:', r.default_model_path())" \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin dcgan

WORKDIR /home/dcgan
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
CMD ["dcgan", "serve", "--host", "0.0.0.0", "--port", "8000"]
