#!/bin/sh
# The container's start (the image's `nvd-start`, its CMD under tini, which Railway runs too): the
# migrations, run where the workspace is mounted (a platform's pre-deploy step runs without the
# volume), then the daemon, exec'd so that it receives SIGTERM itself.
#
# Started as root (Railway, like Docker, mounts a volume owned by root), it first gives the
# workspace to the daemon's user (NVD_USER, `nvd` in the image) and drops to that user: the daemon
# never runs as root. Everything in it is given, not only its top: a volume an earlier, root-run
# deploy wrote holds root's daemon.db, its -wal and project folders, which the daemon could not open.
# Only what another user owns is changed (a big workspace is walked, not rewritten), and a symbolic
# link is changed itself, never what it points to. Started as that user already, it goes straight on.
set -eu
if [ "$(id -u)" = 0 ]; then
    user=${NVD_USER:-nvd}
    workspace=${WORKSPACE_DIR:?WORKSPACE_DIR must be set}
    mkdir -p "$workspace"
    find "$workspace" ! -user "$user" -exec chown -h "$user:" {} +
    exec setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups --no-new-privs -- "$0" "$@"
fi
nvd migrate
exec nvd run
