# kubetrail container image: build on Debian bookworm with the project's own
# dependency script (build packages only), run on bookworm-slim as a non-root
# user with only the runtime libraries (valijson and the other header-only
# build dependencies stay in the build stage). The runtime stage's package
# list is checked against what the installed binary and plugins link
# (tests/packaging/check_image.py, ctest image_has_its_libraries). The root
# filesystem can be mounted read-only: kubetrail writes only its state
# (/var/lib/kubetrail: mount a volume) and its plugins' own paths.
FROM debian:bookworm AS build
WORKDIR /src
COPY packaging/install-deps.sh packaging/install-deps.sh
RUN bash packaging/install-deps.sh --build-only
COPY . .
RUN cmake -S . -B /build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
      -DKUBETRAIL_BUILD_TESTS=OFF -DKUBETRAIL_BUILD_BENCH=OFF \
 && cmake --build /build \
 && DESTDIR=/staging cmake --install /build

FROM debian:bookworm-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="kubetrail" \
      org.opencontainers.image.description="Kubernetes change watcher: semantic field-by-field change sets, who made them, delivered to handler plugins" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.base.name="debian:bookworm-slim"
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libstdc++6 libgcc-s1 \
      libboost-filesystem1.74.0 libfmt9 libsimdjson14 libspdlog1.10 libssl3 libyaml-cpp0.7 \
      libcurl4 libsqlite3-0 libzstd1 libxxhash0 libre2-9 libcpp-httplib0.11 libnats3.4 librdkafka1 libjemalloc2 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 65532 --home-dir /var/lib/kubetrail --create-home kubetrail
COPY --from=build /staging/usr/bin/kubetrail /usr/bin/kubetrail
COPY --from=build /staging/usr/lib/kubetrail/plugins/ /usr/lib/kubetrail/plugins/
COPY packaging/container/kubetrail.toml /etc/kubetrail/kubetrail.toml
EXPOSE 9090
VOLUME /var/lib/kubetrail
USER 65532:65532
WORKDIR /var/lib/kubetrail
ENTRYPOINT ["/usr/bin/kubetrail"]
CMD ["run", "--config", "/etc/kubetrail/kubetrail.toml"]
