#!/usr/bin/env bash
# Installs the daemon into a virtual environment with the locked dependencies: the one install the
# Dockerfile, the wheel's acceptance test (tests/acceptance/test_wheel_install.py) and a systemd
# host share.
#
#   deploy/install.sh VENV [WHEEL]
#
# Without WHEEL, a wheel is built from the source tree this script sits in, from a clean copy (a
# build inside the tree would leave build/ there, and setuptools puts what an earlier build left in
# build/ into the next wheel). Every dependency takes the version requirements.lock pins (LOCK= names
# another file); the script then checks that nothing outside the lock was installed, that pip finds
# the set consistent, and that the `nvd` command runs. PYTHON= picks the interpreter (3.11 or newer).
# Run again on the same VENV, it upgrades: the daemon's files are replaced, whatever version the
# wheel says.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
    echo "usage: $0 VENV [WHEEL]" >&2
    exit 2
fi
venv=$1
wheel=${2:-}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lock=${LOCK:-$root/requirements.lock}
python=${PYTHON:-python3}

"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "install.sh: Python 3.11+ is needed; set PYTHON=python3.11")'
[[ -f $lock ]] || { echo "install.sh: no lock file at $lock" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ -z $wheel ]]; then
    mkdir "$work/src"
    tar -C "$root" -cf - \
        --exclude=./.git --exclude=./.venv --exclude=./workspace --exclude=./build --exclude=./dist \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=.mypy_cache --exclude=.pytest_cache \
        --exclude=.ruff_cache --exclude=.hypothesis --exclude=./tests --exclude=./benchmarks \
        --exclude=./docs --exclude=./sandbox-state . | tar -C "$work/src" -xf -
    "$python" -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$work/src"
    wheel=$(echo "$work"/dist/*.whl)
fi
[[ -f $wheel ]] || { echo "install.sh: no wheel at $wheel" >&2; exit 1; }

[[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
# The dependencies, at the lock's versions; then the wheel itself, always: the version is static, and
# pip leaves an installed version alone, so a re-run (an upgrade from a newer checkout) would keep
# the old code. Reinstalling it alone (--no-deps) replaces its files and touches nothing else.
"$venv/bin/python" -m pip install --quiet --constraint "$lock" "$wheel"
"$venv/bin/python" -m pip install --quiet --force-reinstall --no-deps "$wheel"

# Everything installed is the lock's version (a dependency the lock lacks would float).
"$venv/bin/python" - "$lock" <<'PY'
import re
import sys
from importlib import metadata


def canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


pins = {}
with open(sys.argv[1], encoding="utf-8") as lock:
    for line in lock:
        found = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if found:
            pins[canon(found[1])] = found[2]
own = {"notion-video-daemon", "pip", "setuptools", "wheel"}
loose = sorted(
    f"{d.metadata['Name']} {d.version}"
    for d in metadata.distributions()
    if canon(d.metadata["Name"]) not in own and pins.get(canon(d.metadata["Name"])) != d.version
)
if loose:
    sys.exit(f"install.sh: not the locked versions (run make lock): {', '.join(loose)}")
PY
"$venv/bin/python" -m pip check >/dev/null
echo "install.sh: $("$venv/bin/nvd" --version) in $venv"
