# syntax=docker/dockerfile:1
#
# currents-amplitude: a static binary on a distroless, non-root base.
#
#   docker build -t currents-amplitude .
#   docker run --rm currents-amplitude run config/quickstart.yaml          # dry run on the bundled samples
#   docker run --rm -p 8080:8080 -p 4195:4195 \
#     -e AMPLITUDE_API_KEY -e BRAZE_CURRENTS_TOKEN \
#     currents-amplitude run config/currents_http_to_amplitude.yaml
#
# Tag the image with the release; --version prints it (without VERSION, the
# binary reports its module version or "dev"):
#   docker build -t currents-amplitude:v0.1.0 --build-arg VERSION=v0.1.0 \
#     --build-arg DATE_BUILT=$(date -u +%Y-%m-%dT%H:%M:%SZ) .
#
# Layout of the image (README.md, "Docker"):
#   /usr/local/bin/currents-amplitude    the binary (the entrypoint)
#   /etc/currents-amplitude/             the working directory
#   /etc/currents-amplitude/config/      the shipped pipelines and samples ("run config/quickstart.yaml")
#   /etc/currents-amplitude/config.yaml  your own pipeline: mount it here and start with "run" and no file
#                                        (the binary's default config path)
#   /var/lib/currents-amplitude/         writable by the runtime user (mount volumes here):
#     dead-letter/                       dead-letter files (DLQ_PATH, DEAD_LETTER_DIR)
#     state/                             store files: cohort sync state, webhook ids, backfill
#                                        progress (COHORT_STATE_DIR, STATE_DIR; docs/state.md)
#   /usr/share/doc/currents-amplitude/   LICENSE

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=
ARG DATE_BUILT=
# The same build as .ci/run's "static binary" step.
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X main.Version=${VERSION} -X main.DateBuilt=${DATE_BUILT}" \
      -o /out/currents-amplitude . \
 && /out/currents-amplitude lint -e config/lint.env $(ls config/*.yaml config/*/*.yaml 2>/dev/null | grep -v '_benthos_test.yaml$') \
 && mkdir -p /out/var/lib/currents-amplitude/state /out/var/lib/currents-amplitude/dead-letter

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=
ARG DATE_BUILT=
LABEL org.opencontainers.image.title="currents-amplitude" \
      org.opencontainers.image.description="Braze Currents to Amplitude, and Amplitude cohorts to Braze: a Benthos distribution" \
      org.opencontainers.image.source="https://github.com/opencurrents/currents-amplitude" \
      org.opencontainers.image.documentation="https://github.com/opencurrents/currents-amplitude#readme" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${DATE_BUILT}"
COPY --from=build /out/currents-amplitude /usr/local/bin/currents-amplitude
COPY --from=build --chown=65532:65532 /out/var/lib/currents-amplitude /var/lib/currents-amplitude
COPY config /etc/currents-amplitude/config
COPY LICENSE /usr/share/doc/currents-amplitude/LICENSE
WORKDIR /etc/currents-amplitude
USER 65532:65532
ENV DLQ_PATH=/var/lib/currents-amplitude/dead-letter/dlq.jsonl \
    DEAD_LETTER_DIR=/var/lib/currents-amplitude/dead-letter \
    COHORT_STATE_DIR=/var/lib/currents-amplitude/state \
    STATE_DIR=/var/lib/currents-amplitude/state
# 8080: Braze Currents connector endpoint; 4195: Benthos' /ping, /ready and /metrics.
EXPOSE 8080 4195
ENTRYPOINT ["/usr/local/bin/currents-amplitude"]
CMD ["run", "config/quickstart.yaml"]
