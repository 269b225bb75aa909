# Prometheus FROM scratch: Debian's binary (`make prometheus`) and the libraries
# ldd lists for it, staged by `make images` into target/images/prometheus/.
# docker-compose.yml mounts the scrape config (deploy/prometheus/prometheus.yml).
FROM scratch
COPY rootfs/ /
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.listen-address=0.0.0.0:9090"]
