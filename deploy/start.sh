#!/bin/sh
# The container's start (the image's `nvd-start`, railway.json's startCommand): the migrations, run
# where the workspace is mounted (a platform's pre-deploy step runs without the volume), then the
# daemon, exec'd so that it receives SIGTERM itself.
#
# Started as root (Railway, like Docker, mounts a volume owned by root), it first gives the
# workspace to the daemon's user (NVD_USER, `nvd` in the image) and drops to that user: the daemon
# never runs as root. Started as that user already, it goes straight on.
set -eu
if [ "$(id -u)" = 0 ]; then
    user=${NVD_USER:-nvd}
    workspace=${WORKSPACE_DIR:?WORKSPACE_DIR must be set}
    mkdir -p "$workspace"
    chown "$user:" "$workspace"
    exec setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups --no-new-privs -- "$0" "$@"
fi
nvd migrate
exec nvd run
