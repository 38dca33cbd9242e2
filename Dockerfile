# rdev's server image: the binary, git (rdev hosts repositories with it)
# and bubblewrap (for --sandbox auto where user namespaces are allowed).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /rdev ./cmd/rdev

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates bubblewrap \
	&& rm -rf /var/lib/apt/lists/* \
	&& useradd --uid 10001 --create-home rdev
COPY --from=build /rdev /usr/local/bin/rdev
USER rdev
EXPOSE 7420
ENTRYPOINT ["/usr/local/bin/rdev"]
CMD ["serve", "--addr=0.0.0.0:7420", "--data=/var/lib/rdev"]
