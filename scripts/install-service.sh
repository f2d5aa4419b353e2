#!/usr/bin/env bash
# Install (or remove) sora-watcher as a systemd service.
#
#   scripts/install-service.sh [--home DIR] [--user NAME] [--venv DIR] [--xvfb] [--gpu] [--dry-run]
#   scripts/install-service.sh --uninstall [--dry-run]
#
# Install: fills systemd/sora-watcher.service with this checkout's paths and writes it to
# /etc/systemd/system/, creates the service user if missing, creates the folder set and
# gives it to that user, optionally adds the Xvfb drop-in (headed browser) and the GPU drop-in
# (the diffusers backend), then `systemctl daemon-reload`. Running it again brings everything to the same state.
# --uninstall: stops and disables the service, removes the unit and the drop-ins, reloads;
# the folder set and the user are kept (the commands to remove them are printed).
# --dry-run: changes nothing and needs no root; prints the commands and the files instead.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
unit_name=sora-watcher.service
unit_dir=/etc/systemd/system
unit_path=$unit_dir/$unit_name
dropin_dir=$unit_dir/$unit_name.d
dropin_path=$dropin_dir/xvfb.conf
gpu_dropin_path=$dropin_dir/gpu.conf
folders=(inbox processing processed failed images logs debug_screenshots)

home=/var/lib/sora-watcher
user=sora
venv=$repo/.venv
xvfb=false
gpu=false
dry_run=false
uninstall=false
home_given=false
user_given=false

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

die() {
    echo "install-service: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case $1 in
        --home) [ $# -ge 2 ] || die "--home needs a folder"; home=$2; home_given=true; shift ;;
        --home=*) home=${1#*=}; home_given=true ;;
        --user) [ $# -ge 2 ] || die "--user needs a name"; user=$2; user_given=true; shift ;;
        --user=*) user=${1#*=}; user_given=true ;;
        --venv) [ $# -ge 2 ] || die "--venv needs a folder"; venv=$2; shift ;;
        --venv=*) venv=${1#*=} ;;
        --xvfb) xvfb=true ;;
        --gpu) gpu=true ;;
        --dry-run) dry_run=true ;;
        --uninstall) uninstall=true ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done

if ! $dry_run && [ "$(id -u)" != 0 ]; then
    die "must run as root (or add --dry-run to see what it would do)"
fi

# Run a command, or only show it with --dry-run.
run() {
    if $dry_run; then
        printf 'would run:'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# In a container or an image build there may be no systemd to tell; the files still count.
systemd_running=false
if $dry_run || [ -d /run/systemd/system ]; then
    systemd_running=true
fi
reload() {
    if $systemd_running; then
        run systemctl daemon-reload
    else
        echo "systemd is not running here: skipped systemctl daemon-reload"
    fi
}

# Write stdin to a file (mode 0644), or show it with --dry-run between markers.
write_file() {
    local path=$1 content
    content=$(cat)
    if $dry_run; then
        printf 'would write: %s\n' "$path"
        printf '==> %s\n%s\n<== %s\n' "$path" "$content" "$path"
    else
        local tmp
        tmp=$(mktemp "$path.XXXXXX")
        printf '%s\n' "$content" >"$tmp"
        chmod 0644 "$tmp"
        mv -f "$tmp" "$path"
        echo "wrote $path"
    fi
}

if $uninstall; then
    if $dry_run; then
        echo "dry run: nothing is changed"
    fi
    # The folder set and the user of the installed unit, for the closing message.
    if [ -r "$unit_path" ]; then
        $home_given || home=$(sed -n 's/^WorkingDirectory=//p' "$unit_path" | tail -n 1)
        $user_given || user=$(sed -n 's/^User=//p' "$unit_path" | tail -n 1)
    fi
    if $dry_run || [ -e "$unit_path" ]; then
        if $systemd_running; then
            run systemctl disable --now "$unit_name"
        else
            run systemctl disable "$unit_name"  # works offline: removes the symlinks
        fi
    fi
    run rm -f "$dropin_path" "$gpu_dropin_path"
    if $dry_run || [ -d "$dropin_dir" ]; then
        run rmdir --ignore-fail-on-non-empty "$dropin_dir"
    fi
    run rm -f "$unit_path"
    reload
    if $systemd_running; then
        run systemctl reset-failed "$unit_name" 2>/dev/null || true
    fi
    cat <<EOF

sora-watcher is no longer a service. Kept on purpose: the folder set (images, session.json,
.env) and the service user. To remove them too:
  userdel $user
  rm -rf ${home}    # every image, the saved session and the settings
EOF
    exit 0
fi

# --- Checks ---------------------------------------------------------------------------------
# Systemd would expand % and $ and split on spaces: keep paths plain.
plain_path() {
    case $1 in
        /*) ;;
        *) die "$2 must be an absolute path: $1" ;;
    esac
    [[ $1 =~ ^[A-Za-z0-9._/+@-]+$ ]] || die "$2 has characters a unit file cannot hold as is: $1"
}
[[ $user =~ ^[a-z_][a-z0-9_-]*$ ]] || die "not a valid user name: $user"
home=$(realpath -m -- "$home")
venv=$(realpath -m -- "$venv")
plain_path "$home" "--home"
plain_path "$venv" "--venv"
plain_path "$repo" "the checkout"
# The folder set is chowned to the service user: refuse system folders, a whole home, and
# the checkout itself (the daemon must not own, nor be able to write, its own code).
case $home/ in
    /etc/* | /usr/* | /bin/* | /sbin/* | /lib/* | /lib64/* | /boot/* | /dev/* | /proc/* | \
        /sys/* | /run/* | /root/)
        die "--home $home is a system folder: use e.g. /var/lib/sora-watcher" ;;
esac
[[ $home =~ ^/[^/]+/[^/]+ ]] || die "--home $home is too close to /: use e.g. /var/lib/sora-watcher"
case $home in
    /home/*/*) ;;
    /home/*) die "--home $home is a whole home folder: use a folder inside it" ;;
    /var/lib | /var/cache | /var/log | /var/spool | /var/tmp | /var/mail)
        die "--home $home is a system folder: use e.g. /var/lib/sora-watcher" ;;
esac
case $repo/ in
    "$home"/*) die "--home $home contains the checkout $repo: keep the folder set apart" ;;
esac

exe=$venv/bin/sora-watcher
if [ ! -x "$exe" ]; then
    die "$exe is missing: run \`make install\` first (or give --venv)"
fi
if $xvfb; then
    for tool in xvfb-run xauth pkill pgrep; do
        if ! command -v "$tool" >/dev/null; then
            msg="$tool is missing, needed by --xvfb: apt-get install xvfb xauth procps"
            if $dry_run; then echo "warning: $msg" >&2; else die "$msg"; fi
        fi
    done
fi

# ProtectHome=yes hides /home, /root and /run/user entirely; read-only when we live there
# (the folder set, the checkout, or the Python the venv was made from, e.g. a pyenv one).
python=$(readlink -f -- "$venv/bin/python" || echo "$venv/bin/python")
protect_home=yes
for path in "$home" "$venv" "$repo" "$python"; do
    case $path/ in
        /home/* | /root/* | /run/user/*) protect_home=read-only ;;
    esac
done

if id -u "$user" >/dev/null 2>&1; then
    group=$(id -gn "$user")
else
    group=$user
fi

# The template with its placeholders filled (comment lines keep them, as documentation).
render() {
    printf '# Made by %s/scripts/install-service.sh from %s.\n' "$repo" "${1#"$repo"/}"
    printf '# Run it again to update; local changes go in a drop-in (systemctl edit).\n'
    sed -e "/^[[:space:]]*#/!{s|@HOME@|$home|g; s|@VENV@|$venv|g; s|@REPO@|$repo|g}" \
        -e "/^[[:space:]]*#/!{s|@USER@|$user|g; s|@GROUP@|$group|g}" \
        -e "/^[[:space:]]*#/!s|@PROTECT_HOME@|$protect_home|g" \
        "$1"
}

# --- Install --------------------------------------------------------------------------------
if $dry_run; then
    echo "dry run: nothing is changed"
fi

if ! id -u "$user" >/dev/null 2>&1; then
    run useradd --system --user-group --home-dir "$home" --no-create-home \
        --shell /usr/sbin/nologin --comment "sora-watcher daemon" "$user"
fi

# The folder set: the user's home, private (UMask=0077 keeps new files private too).
run install -d -m 0700 -o "$user" -g "$group" "$home"
for folder in "${folders[@]}"; do
    run install -d -m 0700 -o "$user" -g "$group" "$home/$folder"
done
# Files already there (a session.json copied in, an older folder set) change owner too.
run chown -R "$user:$group" "$home"
for secret in session.json .env; do
    if $dry_run || [ -e "$home/$secret" ]; then
        run chmod 0600 "$home/$secret"
    fi
done

# The service user must be able to run the code where it is: a checkout, or a venv made
# from a Python (pyenv...), inside a 0700 home will not do. Checked before any unit exists.
if ! $dry_run && ! runuser -u "$user" -- "$venv/bin/python" -c 'import sora_watcher' 2>/dev/null
then
    echo "install-service: user $user cannot run $python or import sora_watcher from $repo." >&2
    die "make both readable to it, or put the checkout in e.g. /opt/sora-watcher with a venv
made from /usr/bin/python3 (python3 -m venv .venv && .venv/bin/pip install -e .)"
fi

render "$repo/systemd/sora-watcher.service" | write_file "$unit_path"
# Each drop-in: installed when asked for; installing without it removes it (back to headless,
# back to no GPU).
dropin() {  # dropin WANTED TEMPLATE PATH
    if "$1"; then
        run install -d -m 0755 "$dropin_dir"
        render "$repo/systemd/$2" | write_file "$3"
    elif $dry_run || [ -e "$3" ]; then
        run rm -f "$3"
        run rmdir --ignore-fail-on-non-empty "$dropin_dir"
    fi
}
dropin "$xvfb" sora-watcher-xvfb.conf "$dropin_path"
dropin "$gpu" sora-watcher-gpu.conf "$gpu_dropin_path"
reload

cat <<EOF

Next steps:
  1. The OpenAI Images API (the default backend): put OPENAI_API_KEY=sk-... in $home/.env,
     then: chown $user: $home/.env && chmod 600 $home/.env
     The web backend (SORA_BACKEND=web): put the saved browser session (made with
     \`sora-watcher login\` on a machine with a screen) at $home/session.json, then:
     chown $user: $home/session.json
     Settings go in $home/.env (see .env.example); the unit already sets SORA_HOME.
  2. systemctl enable --now sora-watcher
     (already running: systemctl restart sora-watcher, to use this unit)
  3. journalctl -u sora-watcher -f          (the daemon's log)
     systemctl status sora-watcher           (state, and the daemon's STATUS= line)
     cd $home && runuser -u $user -- $venv/bin/sora-watcher status
  Drop prompt files into $home/inbox/; images appear in $home/images/.
EOF
