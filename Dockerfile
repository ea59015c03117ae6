# syntax=docker/dockerfile:1
#
# The ramp-controller image: built from this workspace, run as an unprivileged user from a
# small Debian runtime that carries git and ssh (the GitOps reconciler reaches ssh:// remotes
# through the ssh client) and the CA certificates HTTPS remotes and metric providers need.
#
#   docker build -t ghcr.io/ramp-rollouts/ramp:0.1.0 .
#
# The Helm chart runs it as `ramp-controller run …` with a read-only root filesystem; /tmp is
# the only writable path (an emptyDir: Git caches, ssh state via HOME=/tmp).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ramp-controller --bin ramp-controller --bin kubectl-ramp \
    && mkdir -p /out \
    && cp target/release/ramp-controller target/release/kubectl-ramp /out/

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates git openssh-client \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 ramp \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin ramp
COPY --from=build /out/ramp-controller /out/kubectl-ramp /usr/local/bin/
USER 65532:65532
ENV HOME=/tmp
EXPOSE 8080 8090
ENTRYPOINT ["ramp-controller"]
CMD ["run"]
