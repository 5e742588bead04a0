# The setpoint image: static binaries on distroless, run as non-root.
#   docker build -t ghcr.io/setpoint-dev/setpoint:dev --build-arg VERSION=v0.1.0 .
FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=""
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/setpoint ./cmd/setpoint
# The PostgreSQL agent, which PostgresCluster pods copy from this image.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/setpoint-postgres-agent ./cmd/setpoint-postgres-agent

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/setpoint /setpoint
COPY --from=build /out/setpoint-postgres-agent /setpoint-postgres-agent
# The nonroot user of distroless (65532), as the manifests' runAsUser.
USER 65532:65532
ENTRYPOINT ["/setpoint"]
