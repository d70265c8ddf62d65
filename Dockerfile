# kubetrail container image: build on Debian bookworm with the project's own
# dependency script, run on bookworm-slim as a non-root user with only the
# runtime libraries (valijson and the other header-only build dependencies
# stay in the build stage).
FROM debian:bookworm AS build
WORKDIR /src
COPY packaging/install-deps.sh packaging/install-deps.sh
RUN bash packaging/install-deps.sh
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
      -DKUBETRAIL_BUILD_TESTS=OFF -DKUBETRAIL_BUILD_BENCH=OFF \
 && cmake --build /build \
 && DESTDIR=/staging cmake --install /build

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 libgcc-s1 \
      libboost-filesystem1.74.0 libfmt9 libsimdjson14 libspdlog1.10 libssl3 libyaml-cpp0.7 \
      libcurl4 libsqlite3-0 libzstd1 libxxhash0 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 65532 --home-dir /var/lib/kubetrail --create-home kubetrail
COPY --from=build /staging/usr/bin/kubetrail /usr/bin/kubetrail
COPY --from=build /staging/usr/lib/kubetrail/plugins/ /usr/lib/kubetrail/plugins/
COPY examples/kubetrail.toml /etc/kubetrail/kubetrail.toml
USER 65532:65532
WORKDIR /var/lib/kubetrail
ENTRYPOINT ["/usr/bin/kubetrail"]
CMD ["run", "--config", "/etc/kubetrail/kubetrail.toml"]
