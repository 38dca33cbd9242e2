# The image of projects' dev pods, where sessions run: rdev needs /bin/sh,
# git and the usual tools of a shell (tr, grep, kill, cat) in it; add the
# project's own toolchain on top.
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates procps \
	&& rm -rf /var/lib/apt/lists/*
WORKDIR /workspace
