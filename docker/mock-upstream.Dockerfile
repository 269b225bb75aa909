# The testbed's mock-upstream FROM scratch: the release binary and the libraries ldd
# lists for it, staged by `make images` into target/images/mock-upstream/.
FROM scratch
COPY rootfs/ /
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/mock-upstream"]
CMD ["--listen", "0.0.0.0:8081"]
