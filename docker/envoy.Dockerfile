# Envoy FROM scratch: the .venv Envoy binary, the libraries ldd lists for it and
# the CA bundle, staged by `make images` into target/images/envoy/.
# The config (target/images/envoy.yaml) and dist/streamtap.wasm are mounted by
# docker-compose.yml, not baked in.
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/bin
ENTRYPOINT ["/usr/local/bin/envoy"]
CMD ["-c", "/etc/envoy/envoy.yaml"]
