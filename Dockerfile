# kube-audit-rest container image: one self-contained executable on a minimal non-root base.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/kube-audit-rest:TAG --push .
#   docker buildx build --target alpine --platform linux/amd64,linux/arm64 -t REGISTRY/kube-audit-rest:TAG-alpine --push .
#
# The build stage runs on the build machine's own platform and cross-compiles for the target one,
# so no emulation is needed for arm64.

ARG BUN_VERSION=1.4.4

FROM --platform=$BUILDPLATFORM oven/bun:${BUN_VERSION} AS build
ARG TARGETARCH
WORKDIR /src
COPY package.json bun.lock bunfig.toml tsconfig.json ./
RUN bun install --frozen-lockfile --production
COPY src ./src
# glibc build for distroless, musl build for alpine; TARGETARCH is amd64 or arm64.
RUN arch=$([ "$TARGETARCH" = "arm64" ] && echo arm64 || echo x64) \
 && bun build --compile --minify --target="bun-linux-${arch}" src/main.ts --outfile /out/glibc/kube-audit-rest \
 && bun build --compile --minify --target="bun-linux-${arch}-musl" src/main.ts --outfile /out/musl/kube-audit-rest

# Debugging variant: a shell and the usual tools. Build it with --target alpine.
FROM alpine:3.22 AS alpine
# Alpine keeps only the newest build of a package per release, so pinned versions would break the build at
# the next security fix; the alpine:3.22 tag is the pin.
# hadolint ignore=DL3018
RUN apk add --no-cache libstdc++ libgcc ca-certificates
COPY --from=build /out/musl/kube-audit-rest /usr/local/bin/kube-audit-rest
USER 65532:65532
EXPOSE 9090 55555
ENTRYPOINT ["/usr/local/bin/kube-audit-rest"]

# Default: distroless "base" (glibc and CA certificates; no shell, no package manager) running as the
# nonroot user 65532. The Bun executable links only glibc (libc, libpthread, libdl, libm, per ldd), so
# "base" is enough and "static" is not.
FROM gcr.io/distroless/base-debian12:nonroot AS distroless
COPY --from=build /out/glibc/kube-audit-rest /usr/local/bin/kube-audit-rest
USER 65532:65532
EXPOSE 9090 55555
ENTRYPOINT ["/usr/local/bin/kube-audit-rest"]
