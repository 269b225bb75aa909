# The testbed's collector FROM scratch: the release binary and the libraries ldd
# lists for it, staged by `make images` into target/images/collector/.
FROM scratch
COPY rootfs/ /
EXPOSE 8082
ENTRYPOINT ["/usr/local/bin/collector"]
CMD ["--listen", "0.0.0.0:8082"]
