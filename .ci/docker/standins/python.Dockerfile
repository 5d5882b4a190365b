# Stand-in for python:3.11-slim where no registry can be reached: Debian bookworm's python3 (3.11), with a venv
# first on PATH so that `python`, `pip install` and installed console scripts work as in the official image.
# Built by .ci/docker/base-images on the debootstrap base; never pushed anywhere.
FROM celery-alerting-ci/bookworm:base
ENV PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
RUN python3 -m venv /usr/local/python && /usr/local/python/bin/python --version
CMD ["python3"]
