#!/bin/sh
# install.sh — installs this implant-hub bundle. Needs no network: everything is in wheels/.
#
#   sh install.sh [--root DIR] [--python PY]     verify, install, make it the current release
#   sh install.sh --rollback [--root DIR]        make the previous release current again
#   sh install.sh --selftest [--root DIR] [--python PY]   run the current release's self-test
#
# Layout under DIR (default /): opt/implant-hub/releases/<version>-<manifest hash>/site (the
# hub and its dependencies), opt/implant-hub/current and previous (relative symlinks, switched
# atomically), opt/implant-hub/bin/hub (launcher), etc/implant-hub/hub.env (configuration,
# never overwritten), etc/systemd/system/implant-hub.service.
# The pip that installs is the bundle's own wheel run by PY (default python3; for a target root
# of another architecture, the build machine's python installs with pip's --platform tags).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=/
py=python3
action=install
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=$2; shift 2 ;;
        --python) py=$2; shift 2 ;;
        --rollback) action=rollback; shift ;;
        --selftest) action=selftest; shift ;;
        *) echo "install.sh: unknown argument $1" >&2; exit 64 ;;
    esac
done
fail() { echo "install.sh: error: $*" >&2; exit "${code:-1}"; }
. "$here/BUNDLE.env"
root=$(cd "$root" 2>/dev/null && pwd) || fail "target root $root does not exist"
base=${root%/}/opt/implant-hub

verify() {
    cd "$here"
    [ -f MANIFEST.sha256 ] || { code=3 fail "bundle has no MANIFEST.sha256"; }
    if ! bad=$(sha256sum -c --strict MANIFEST.sha256 2>&1 | grep -v ': OK$'); then bad=""; fi
    if [ -n "$bad" ]; then
        code=3 fail "bundle is corrupt, nothing installed: $(echo "$bad" | tr '\n' ' ')"
    fi
    listed=$(sed 's/^[0-9a-f]*  //' MANIFEST.sha256 | sort)
    present=$(find . -type f ! -name MANIFEST.sha256 | sed 's|^\./||' | sort)
    [ "$listed" = "$present" ] || { code=3 fail "bundle has files the manifest does not list, nothing installed"; }
    cd - >/dev/null
}

install_release() {
    verify
    id="$VERSION-$(sha256sum "$here/MANIFEST.sha256" | cut -c1-8)"
    rel="$base/releases/$id"
    mkdir -p "$base/releases" "$base/bin"
    if [ ! -d "$rel" ]; then
        tmp="$base/releases/.$id.tmp$$"
        rm -rf "$tmp"
        trap 'rm -rf "$tmp"' EXIT
        # the bundle's own pip (a board's python3 may have none); a bundle without it
        # (--no-deps, for tests) uses PY's
        pipwhl=$(ls "$here"/wheels/pip-*.whl 2>/dev/null | head -n 1 || true)
        if [ -n "$pipwhl" ]; then set -- "$pipwhl/pip"; else set -- -m pip; fi
        set -- "$@" install --quiet --disable-pip-version-check --no-index \
            --find-links "$here/wheels" --only-binary=:all: --target "$tmp/site" \
            --python-version "$PY_VERSION" --implementation cp --platform "linux_$MACHINE"
        for p in $PLATFORMS; do set -- "$@" --platform "$p"; done
        [ "$DEPS" = 1 ] || set -- "$@" --no-deps
        "$py" "$@" "implant-hub==$VERSION" \
            || fail "pip could not install the bundle's wheels"
        rm -rf "$tmp/site/bin"          # console scripts name the installing python
        mv "$tmp" "$rel"
        trap - EXIT
    fi
    cat > "$base/bin/.hub.tmp" <<'LAUNCHER'
#!/bin/sh
# implant-hub launcher: the current release's hub package on the system python3.
PYTHONPATH=/opt/implant-hub/current/site exec python3 -m hub "$@"
LAUNCHER
    chmod 755 "$base/bin/.hub.tmp"
    mv -f "$base/bin/.hub.tmp" "$base/bin/hub"
    mkdir -p "$root/etc/implant-hub" "$root/etc/systemd/system"
    [ -e "$root/etc/implant-hub/hub.env" ] || cp "$here/hub.env" "$root/etc/implant-hub/hub.env"
    cp "$here/implant-hub.service" "$root/etc/systemd/system/implant-hub.service"
    old=$(readlink "$base/current" 2>/dev/null || true)
    if [ "$old" != "releases/$id" ]; then
        if [ -n "$old" ]; then ln -sfn "$old" "$base/.previous"; mv -T "$base/.previous" "$base/previous"; fi
        ln -sfn "releases/$id" "$base/.current"
        mv -T "$base/.current" "$base/current"
    fi
    # keep only the current and the previous release
    keep_prev=$(readlink "$base/previous" 2>/dev/null || true)
    for d in "$base"/releases/*; do
        [ -d "$d" ] || continue
        r="releases/$(basename "$d")"
        [ "$r" = "releases/$id" ] || [ "$r" = "$keep_prev" ] || rm -rf "$d"
    done
    echo "installed implant-hub $id ($MACHINE) into $root"
}

rollback() {
    prev=$(readlink "$base/previous" 2>/dev/null) || fail "no previous release to roll back to"
    cur=$(readlink "$base/current" 2>/dev/null || true)
    ln -sfn "$prev" "$base/.current"
    mv -T "$base/.current" "$base/current"
    rm -f "$base/previous"
    [ -z "$cur" ] || [ "$cur" = "$prev" ] || rm -rf "${base:?}/$cur"
    echo "rolled back to implant-hub ${prev#releases/} (removed ${cur#releases/})"
}

selftest() {
    [ -e "$base/current" ] || fail "nothing installed in $root"
    if [ "$root" = / ]; then
        exec /opt/implant-hub/bin/hub selftest
    elif [ -x "$root/usr/bin/python3" ] && [ "$(id -u)" = 0 ]; then
        exec chroot "$root" /opt/implant-hub/bin/hub selftest     # the target's own python
    elif [ "$(uname -m)" = "$MACHINE" ]; then
        cd / && PYTHONPATH="$base/current/site" exec "$py" -m hub selftest
    else
        code=2 fail "cannot run a $MACHINE self-test in $root from $(uname -m)"
    fi
}

case "$action" in
    install) install_release ;;
    rollback) rollback ;;
    selftest) selftest ;;
esac
