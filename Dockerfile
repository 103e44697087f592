# obsproxy image: a static binary on scratch, run as a non-root user.
#
#   docker build -t obsproxy:dev --build-arg VERSION=0.1.0 .
#   docker run --rm -p 8080:8080 -e OBSPROXY_UPSTREAMS=w1=http://app1:8000 obsproxy:dev
#
# Configuration is the OBSPROXY_* environment, as everywhere (obsproxy --help).
# See docs/docker.md.

# --- build: the same command as `make build` --------------------------------------------------
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=0.1.0-dev
# CGO_ENABLED=0: a static binary that needs no libc in the final image.
# -buildvcs=false: .git is not in the build context (.dockerignore), so there
# is no revision to stamp; `obsproxy version` says "commit unknown".
# The passwd and group entries let tools inside and outside the container name the user.
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/obsproxy ./cmd/obsproxy \
    && echo 'nonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin' > /out/passwd \
    && echo 'nonroot:x:65532:' > /out/group

# --- run: nothing but the binary, CA certificates (for an https OBSPROXY_PUSH_URL) and the user --
FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/passwd /etc/passwd
COPY --from=build /out/group /etc/group
COPY --from=build /out/obsproxy /obsproxy
# Non-root, by number, so that Kubernetes' runAsNonRoot can check it.
USER 65532:65532
# The public listener must listen on every interface of the container (the
# default, written out here); the admin listener keeps its default
# 127.0.0.1:9090, unreachable from outside the container, until
# OBSPROXY_ADMIN_ADDR=:9090 is set together with OBSPROXY_ADMIN_TOKEN or
# OBSPROXY_ADMIN_IP_ALLOWLIST (obsproxy refuses to start otherwise).
ENV OBSPROXY_LISTEN_ADDR=:8080
EXPOSE 8080 9090
# `obsproxy healthcheck` reads the same OBSPROXY_* environment, GETs the local
# OBSPROXY_HEALTH_PATH and exits 0 on 200 (healthy or degraded), 1 otherwise:
# the container is unhealthy while starting, draining or without a healthy worker.
HEALTHCHECK --interval=5s --timeout=3s --start-period=15s --retries=3 CMD ["/obsproxy", "healthcheck"]
ENTRYPOINT ["/obsproxy"]
