# Multi-stage build of every checkout program on Debian (used by docker-compose.yml).
FROM debian:bookworm AS build
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config libpq-dev libmicrohttpd-dev libjansson-dev \
      librdkafka-dev libcurl4-openssl-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DCHECKOUT_TESTS=OFF \
 && cmake --build /build -j"$(nproc)"

FROM debian:bookworm-slim
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libpq5 libmicrohttpd12 libjansson4 librdkafka1 libcurl4 ca-certificates \
 && rm -rf /var/lib/apt/lists/* && useradd --system --home /nonexistent checkout \
 && mkdir -p /var/spool/checkout-mail && chown checkout /var/spool/checkout-mail
COPY --from=build /build/bin/ /usr/local/bin/
COPY migrations /usr/share/checkout/migrations
ENV MIGRATIONS_DIR=/usr/share/checkout/migrations
USER checkout
