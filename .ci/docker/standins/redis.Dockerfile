# Stand-in for redis:7-alpine where no registry can be reached: Debian bookworm's redis-server (7.0) and redis-cli.
# The official image's entrypoint makes the server reachable from other containers; the wrapper does the same.
# Built by .ci/docker/base-images on the debootstrap base; never pushed anywhere.
FROM celery-alerting-ci/bookworm:base
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY redis-server-wrapper /usr/local/bin/redis-server
EXPOSE 6379
CMD ["redis-server"]
