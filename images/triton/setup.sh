#!/bin/sh
# Runs inside the image root after the lock is installed into /opt/conch.
# The Python backend looks for its stub beside libtriton_python.so: give it the stub built
# for this image's Python, in a backend directory of its own.
set -eu
site=/opt/conch/lib/python3.11/site-packages
dist="$site/pytriton/tritonserver"
mkdir -p /opt/tritonserver/backends
cp -a "$dist/backends/python" /opt/tritonserver/backends/python
cp -a "$dist/python_backend_stubs/3.11/triton_python_backend_stub" /opt/tritonserver/backends/python/
# Stubs for other Pythons are not used here.
rm -rf "$dist/python_backend_stubs"
install -m 0755 /tmp/conch-image/tritonserver /usr/local/bin/tritonserver
