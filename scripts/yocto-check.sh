#!/usr/bin/env bash
# The Yocto metadata check: meta-cbox against the real wrynose layers
# (bitbake 2.18, openembedded-core, meta-yocto, meta-openembedded,
# meta-raspberrypi, meta-rauc), for raspberrypi4-64 and raspberrypi5:
#   - bitbake-layers show-layers
#   - a full parse (any error, or a warning that names meta-cbox, fails)
#   - bitbake -e cbox / cbox-image / rauc-conf / bluez5, with assertions on
#     the variables that matter (IMAGE_FSTYPES, RDEPENDS and systemd units of
#     cbox, the RAUC keyring path, BlueZ's PAN profiles, the wks file)
#   - bitbake -g cbox-image cbox-bundle (the task graph resolves)
#
#   ./scripts/yocto-check.sh            # both machines
#   ./scripts/yocto-check.sh raspberrypi5
#
# Where the layers come from (docs/image.md, "Checking the layer"):
#   CBOX_YOCTO_DIR     work area (default /var/cache/cbox-yocto): layers/,
#                      one build directory per machine, the parse cache
#   CBOX_YOCTO_MIRROR  a directory of local git mirrors, each as
#                      <owner>+<name>/repo, <name>.git or <name> (default
#                      /work/.mirror when it exists); the check clones the
#                      wrynose branches from it into layers/ and follows
#                      them on later runs
# Without layers and without a mirror it says so and skips (exit 0), like the
# fuzz smoke run without a nightly toolchain. bitbake refuses to run as root:
# as root the check runs it as the system user cbox-yocto (created if missing).
# The first run parses about 3,000 recipes twice per machine (about 5 minutes
# each on 2 cores); later runs reuse the parse cache.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD

MACHINES=("$@")
[ "${#MACHINES[@]}" -gt 0 ] || MACHINES=(raspberrypi4-64 raspberrypi5)
WORK=${CBOX_YOCTO_DIR:-/var/cache/cbox-yocto}
LAYERS=$WORK/layers
MIRROR=${CBOX_YOCTO_MIRROR:-}
[ -n "$MIRROR" ] || { [ -d /work/.mirror ] && MIRROR=/work/.mirror; } || true
BUILD_USER=cbox-yocto

# name  branch  github owner/name
REPOS=(
    "bitbake 2.18 openembedded/bitbake"
    "openembedded-core wrynose openembedded/openembedded-core"
    "meta-yocto wrynose yoctoproject/meta-yocto"
    "meta-openembedded wrynose openembedded/meta-openembedded"
    "meta-raspberrypi wrynose agherzan/meta-raspberrypi"
    "meta-rauc wrynose rauc/meta-rauc"
)

log() { printf '   %s\n' "$*"; }
fail() {
    echo "error: $*" >&2
    exit 1
}

# The mirror of one repository, in any of the documented layouts.
mirror_of() {
    local name=$1 gh=$2 c
    for c in "$MIRROR/${gh/\//+}/repo" "$MIRROR/$name.git" "$MIRROR/$name"; do
        [ -d "$c" ] && git --git-dir="$c" rev-parse -q --verify HEAD >/dev/null 2>&1 && { echo "$c"; return 0; }
        [ -d "$c/.git" ] && { echo "$c"; return 0; }
    done
    return 1
}

# Run as the unprivileged build user (bitbake refuses root).
as_builder() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$BUILD_USER" -- env -i HOME="$WORK" PATH=/usr/local/bin:/usr/bin:/bin \
            LANG=en_US.UTF-8 LC_ALL=en_US.UTF-8 "$@"
    else
        env LANG=en_US.UTF-8 LC_ALL=en_US.UTF-8 "$@"
    fi
}

# Host tools bitbake's sanity check wants, and its en_US.UTF-8 locale.
# shellcheck source=scripts/packages.sh
. scripts/packages.sh
ensure_packages git gawk diffstat texinfo chrpath socat cpio lz4 zstd file wget gcc g++ make patch perl \
    bzip2 xz-utils rpcsvc-proto python3 python3-yaml locales
if ! locale -a 2>/dev/null | grep -qix 'en_US.utf8'; then
    [ "$(id -u)" -eq 0 ] || fail "the en_US.UTF-8 locale is missing; run as root to generate it"
    sed -i -E 's/^# *(en_US.UTF-8 UTF-8)/\1/' /etc/locale.gen
    grep -q '^en_US.UTF-8 UTF-8' /etc/locale.gen || echo 'en_US.UTF-8 UTF-8' >>/etc/locale.gen
    locale-gen >/dev/null
fi

# 0. The kas files name the same repositories and branches as this check
#    (and no poky), and every machine file includes them.
echo "-- kas files: the layer set checked here"
REPOS_TEXT=$(printf '%s\n' "${REPOS[@]}") /usr/bin/python3 - yocto-layer/meta-cbox/kas <<'PY'
import os, sys, yaml
kas = sys.argv[1]
want = {}
for line in os.environ["REPOS_TEXT"].splitlines():
    name, branch, gh = line.split()
    want[name] = (branch, gh.split("/")[1])
common = yaml.safe_load(open(os.path.join(kas, "cbox-common.yml")))
repos = {k: v for k, v in common["repos"].items() if k != "cbox"}
errors = []
if set(repos) != set(want):
    errors.append(f"cbox-common.yml repos {sorted(repos)} != {sorted(want)}")
for name, (branch, project) in want.items():
    r = repos.get(name) or {}
    if str(r.get("branch")) != branch:
        errors.append(f"{name}: branch {r.get('branch')!r}, expected {branch!r}")
    if not str(r.get("url", "")).rstrip("/").removesuffix(".git").endswith(project):
        errors.append(f"{name}: url {r.get('url')!r} is not the {project} repository")
for f in sorted(os.listdir(kas)):
    if f.startswith("cbox-rpi") and f.endswith(".yml"):
        doc = yaml.safe_load(open(os.path.join(kas, f)))
        inc = doc.get("header", {}).get("includes", [])
        if "yocto-layer/meta-cbox/kas/cbox-common.yml" not in inc:
            errors.append(f"{f} does not include cbox-common.yml")
        if not doc.get("machine"):
            errors.append(f"{f} names no machine")
        print(f"   {f}: machine {doc.get('machine')}")
for e in errors:
    print("error:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY

# 1. The layers: cloned from the mirror (as root, then handed over: git
#    refuses to read a repository another user owns), or already present.
have_all=1
for r in "${REPOS[@]}"; do
    read -r name _ _ <<<"$r"
    [ -d "$LAYERS/$name/.git" ] || have_all=0
done
if [ -z "$MIRROR" ] && [ "$have_all" -eq 0 ]; then
    echo "skipped: the wrynose layers are not in $LAYERS and no mirror is given (CBOX_YOCTO_MIRROR; docs/image.md)"
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && ! id "$BUILD_USER" >/dev/null 2>&1; then
    useradd --system --home-dir "$WORK" --no-create-home --shell /usr/sbin/nologin "$BUILD_USER"
fi
mkdir -p "$LAYERS"
for r in "${REPOS[@]}"; do
    read -r name branch gh <<<"$r"
    from=""
    [ -z "$MIRROR" ] || from=$(mirror_of "$name" "$gh") || from=""
    if [ -d "$LAYERS/$name/.git" ]; then
        if [ -n "$from" ]; then
            git -C "$LAYERS/$name" -c safe.directory='*' fetch -q "$from" "$branch" &&
                git -C "$LAYERS/$name" -c safe.directory='*' checkout -q --detach FETCH_HEAD
        fi
    else
        [ -n "$from" ] || {
            echo "skipped: $name is neither in $LAYERS nor in the mirror $MIRROR (docs/image.md)"
            exit 0
        }
        git clone -q --no-hardlinks -b "$branch" "$from" "$LAYERS/$name"
    fi
    log "$name $(git -C "$LAYERS/$name" -c safe.directory='*' log -1 --format='%h %cs' HEAD) ($branch)"
done

# 2. This checkout's layer and board files as a small git repository of
#    their own (the cbox recipe fetches CBOX_TOPDIR's main branch), readable by
#    the build user whatever the checkout's permissions. Only changed files
#    are written: bitbake's parse cache keys on modification times.
TOP=$WORK/cbox
sync_tree() {
    local from=$1 to=$2 f
    mkdir -p "$to"
    while IFS= read -r -d '' f; do
        cmp -s "$from/$f" "$to/$f" || { mkdir -p "$(dirname "$to/$f")" && cp "$from/$f" "$to/$f"; }
    done < <(cd "$from" && find . -type f -print0)
    while IFS= read -r -d '' f; do
        [ -e "$from/$f" ] || rm -f "$to/$f"
    done < <(cd "$to" && find . -type f -print0)
}
for d in yocto-layer board docs/systemd; do
    sync_tree "$SRC/$d" "$TOP/$d"
done
[ -d "$TOP/.git" ] || git -C "$TOP" init -q -b main
git -C "$TOP" -c safe.directory='*' add -A
git -C "$TOP" -c safe.directory='*' diff --cached --quiet ||
    git -C "$TOP" -c safe.directory='*' -c user.name=cbox -c user.email=cbox@invalid commit -q -m "meta-cbox under test"
# The cbox recipe follows main by AUTOREV; bitbake parses everything again
# after it resolves an AUTOREV (the fetcher's head revisions changed), so
# every run would parse twice. A check-only layer pins SRCREV to the copy's
# commit instead: a bbappend is a recipe dependency, not configuration, so a
# new commit re-parses only the cbox recipe.
CHECK_LAYER=$WORK/meta-cbox-check
mkdir -p "$CHECK_LAYER/conf" "$CHECK_LAYER/recipes-cbox/cbox"
cat >"$CHECK_LAYER/conf/layer.conf" <<'EOF'
# Written by scripts/yocto-check.sh: pins the cbox recipe's SRCREV.
BBPATH .= ":${LAYERDIR}"
BBFILES += "${LAYERDIR}/recipes-*/*/*.bbappend"
BBFILE_COLLECTIONS += "cbox-check"
BBFILE_PATTERN_cbox-check = "^${LAYERDIR}/"
BBFILE_PRIORITY_cbox-check = "11"
LAYERSERIES_COMPAT_cbox-check = "wrynose"
LAYERDEPENDS_cbox-check = "cbox"
EOF
pin="SRCREV = \"$(git -C "$TOP" -c safe.directory='*' rev-parse HEAD)\""
[ "$(cat "$CHECK_LAYER/recipes-cbox/cbox/cbox_git.bbappend" 2>/dev/null)" = "$pin" ] ||
    printf '%s\n' "$pin" >"$CHECK_LAYER/recipes-cbox/cbox/cbox_git.bbappend"
[ "$(id -u)" -ne 0 ] || chown -R "$BUILD_USER:" "$WORK"

# 3. Per machine: configuration, show-layers, parse, variables, task graph.
# bitbake in the build directory $build (of the caller), as the build user.
bb() {
    as_builder bash -c "export BITBAKEDIR='$LAYERS/bitbake'; . '$LAYERS/openembedded-core/oe-init-build-env' '$build' >/dev/null && $*"
}

check_machine() {
    local machine=$1 build=$WORK/build-$1 out
    # Every directory bitbake would create in the build directory exists
    # before it starts: the server watches that directory, and one created
    # during a command makes the next command parse everything again.
    mkdir -p "$build/conf" "$build/downloads" "$build/sstate-cache" "$build/tmp" "$build/cache"
    RUNNING_BUILD=$build
    cat >"$build/conf/bblayers.conf" <<EOF
# Written by scripts/yocto-check.sh.
LCONF_VERSION = "7"
BBPATH = "\${TOPDIR}"
BBFILES ?= ""
BBLAYERS = " \\
  $LAYERS/openembedded-core/meta \\
  $LAYERS/meta-yocto/meta-poky \\
  $LAYERS/meta-openembedded/meta-oe \\
  $LAYERS/meta-openembedded/meta-python \\
  $LAYERS/meta-openembedded/meta-networking \\
  $LAYERS/meta-raspberrypi \\
  $LAYERS/meta-rauc \\
  $TOP/yocto-layer/meta-cbox \\
  $CHECK_LAYER \\
  "
EOF
    cat >"$build/conf/local.conf" <<EOF
# Written by scripts/yocto-check.sh: metadata only, nothing is fetched.
MACHINE = "$machine"
DISTRO = "cbox"
BB_NO_NETWORK = "1"
CONF_VERSION = "2"
LICENSE_FLAGS_ACCEPTED = "synaptics-killswitch"
# One server for the commands below (each would load the parse cache again);
# stopped with bitbake -m when the machine is done.
BB_SERVER_TIMEOUT = "60"
EOF
    [ "$(id -u)" -ne 0 ] || chown -R "$BUILD_USER:" "$build"

    echo "-- $machine: bitbake-layers show-layers"
    out=$(bb bitbake-layers show-layers 2>&1) || { printf '%s\n' "$out" | tail -n 15; fail "show-layers failed for $machine"; }
    printf '%s\n' "$out" | grep -E '^(meta|core|yocto|openembedded|networking|raspberrypi|rauc|cbox)' || printf '%s\n' "$out" | tail -n 12
    printf '%s\n' "$out" | grep -q "meta-cbox" || fail "meta-cbox is not among the layers"

    echo "-- $machine: full parse"
    # On a fresh build directory the first parse of the cbox recipe changes
    # the configuration's hash once (bitbake would then throw a full parse
    # away); parsing that one recipe alone first makes it happen cheaply.
    bb bitbake -e -b "$TOP/yocto-layer/meta-cbox/recipes-cbox/cbox/cbox_git.bb" >/dev/null 2>&1 || true
    local started=$SECONDS
    out=$(bb bitbake -p 2>&1) || { printf '%s\n' "$out" | tail -n 40; fail "the parse failed for $machine"; }
    parse_report "$out" "full parse"
    log "parsed in $((SECONDS - started)) s: $(printf '%s\n' "$out" | grep -Eo '(Parsing of [0-9]+ .bb files complete|Loaded [0-9]+ entries from dependency cache).*' | tail -n 1)"

    echo "-- $machine: variables"
    check_vars "$machine" "$build"

    echo "-- $machine: bitbake -g cbox-image cbox-bundle"
    out=$(bb "cd '$build' && bitbake -g cbox-image cbox-bundle" 2>&1) || { printf '%s\n' "$out" | tail -n 40; fail "the task graph of cbox-image/cbox-bundle does not resolve for $machine"; }
    parse_report "$out" "task graph"
    [ -s "$build/task-depends.dot" ] || fail "bitbake -g wrote no task-depends.dot"
    log "$(grep -c ' -> ' "$build/task-depends.dot") task dependencies, $(grep -Eo '^"[^"]+"' "$build/task-depends.dot" | sort -u | wc -l) tasks"
    bb bitbake -m >/dev/null 2>&1 || true
    RUNNING_BUILD=""
}

# Errors fail; warnings fail when they come from meta-cbox (the other layers'
# own warnings are theirs and only counted).
parse_report() {
    local out=$1 what=$2 errors ours others
    errors=$(printf '%s\n' "$out" | grep -E '^(ERROR|FATAL):' || true)
    ours=$(printf '%s\n' "$out" | grep -E '^WARNING:' | grep -Ei 'meta-cbox|cbox' || true)
    others=$(printf '%s\n' "$out" | grep -E '^WARNING:' | grep -Eiv 'meta-cbox|cbox' | grep -c . || true)
    [ -z "$errors" ] || { printf '%s\n' "$errors"; fail "$what: errors"; }
    [ -z "$ours" ] || { printf '%s\n' "$ours"; fail "$what: warnings from meta-cbox"; }
    log "$what: 0 errors, 0 warnings from meta-cbox ($others from other layers)"
}

# The value of VAR in `bitbake -e` output (FILE), unquoted.
getvar() { { grep -E "^(export )?$2=" "$1" || true; } | tail -n 1 | sed -E "s/^(export )?$2=\"(.*)\"\$/\\2/"; }

expect_word() {
    local file=$1 var=$2 word=$3 value
    value=$(getvar "$file" "$var")
    [[ " $value " == *" $word "* ]] || fail "$var is \"$value\", expected it to contain $word"
    log "$var has $word"
}

expect_not_word() {
    local file=$1 var=$2 word=$3 value
    value=$(getvar "$file" "$var")
    [[ " $value " != *" $word "* ]] || fail "$var is \"$value\", which must not contain $word"
}

check_vars() {
    local machine=$1 build=$2 e
    # Outside the build directory (see above).
    e=$WORK/env-$machine
    mkdir -p "$e"
    [ "$(id -u)" -ne 0 ] || chown "$BUILD_USER:" "$e"
    for recipe in cbox cbox-image rauc-conf bluez5 cbox-board cbox-ap; do
        bb "bitbake -e $recipe > '$e/$recipe.env'" >/dev/null 2>&1 ||
            { tail -n 20 "$e/$recipe.env" >&2; fail "bitbake -e $recipe failed for $machine"; }
    done
    # The distro's override is not a recipe name (pn-overrides QA).
    local ov
    ov=$(getvar "$e/cbox.env" DISTROOVERRIDES)
    [[ ":$ov:" != *":cbox:"* ]] || fail "DISTROOVERRIDES ($ov) contains cbox, the name of a recipe"
    log "DISTROOVERRIDES = $ov"
    # The bundle takes the image's ext4; the card image is a wic.
    expect_word "$e/cbox-image.env" IMAGE_FSTYPES ext4
    expect_word "$e/cbox-image.env" IMAGE_FSTYPES wic.bz2
    expect_word "$e/cbox-image.env" IMAGE_FSTYPES wic.bmap
    expect_word "$e/cbox-image.env" WKS_FILE cbox-rpi.wks
    [[ "$(getvar "$e/cbox-image.env" WKS_FULL_PATH)" == */meta-cbox/files/wic/cbox-rpi.wks ]] ||
        fail "WKS_FULL_PATH is $(getvar "$e/cbox-image.env" WKS_FULL_PATH)"
    expect_word "$e/cbox-image.env" IMAGE_INSTALL cbox
    expect_word "$e/cbox-image.env" IMAGE_INSTALL rauc
    expect_word "$e/cbox-image.env" IMAGE_INSTALL cbox-ap
    # The access point: hostapd and its unit, enabled.
    expect_word "$e/cbox-ap.env" RDEPENDS:cbox-ap hostapd
    expect_word "$e/cbox-ap.env" SYSTEMD_SERVICE:cbox-ap cbox-hostapd.service
    expect_not_word "$e/cbox-ap.env" SYSTEMD_AUTO_ENABLE:cbox-ap disable
    expect_word "$e/cbox-image.env" IMAGE_FEATURES read-only-rootfs
    # The daemons' packages, units and run-time dependencies.
    expect_word "$e/cbox.env" RDEPENDS:cbox cbox-provision
    expect_word "$e/cbox.env" RDEPENDS:cbox dbus
    expect_word "$e/cbox.env" SYSTEMD_SERVICE:cbox cnaptd.service
    expect_word "$e/cbox.env" SYSTEMD_SERVICE:cbox cbox-mark-good.service
    expect_word "$e/cbox.env" SYSTEMD_SERVICE:cbox-snaptd snaptd.service
    expect_word "$e/cbox.env" SYSTEMD_SERVICE:cbox-provision cbox-provision.service
    expect_word "$e/cbox.env" PACKAGES cbox-snaptd
    grep -qE '^RDEPENDS=' "$e/cbox.env" && [ -n "$(getvar "$e/cbox.env" RDEPENDS)" ] &&
        fail "RDEPENDS (not package specific) is set in cbox: $(getvar "$e/cbox.env" RDEPENDS)"
    # RAUC: our system.conf, and the keyring where rauc-conf installs it.
    local keyring_dir keyring
    keyring_dir=$(getvar "$e/rauc-conf.env" RAUC_KEYRING_DIR)
    [ -n "$keyring_dir" ] || keyring_dir=$(getvar "$e/rauc-conf.env" nonarch_libdir)/rauc
    keyring=$(getvar "$e/rauc-conf.env" RAUC_KEYRING_FILE)
    # … and rauc-conf's do_install really puts it there.
    grep -Eq "install -m 0644 .*/${keyring} .*${keyring_dir}/?\$" "$e/rauc-conf.env" ||
        fail "rauc-conf's do_install does not install ${keyring} into ${keyring_dir}"
    grep -q "^path=$keyring_dir/$(basename "$keyring")\$" "$TOP/yocto-layer/meta-cbox/recipes-core/rauc/files/system.conf" ||
        fail "system.conf's keyring path is not $keyring_dir/$(basename "$keyring") (where rauc-conf installs the keyring)"
    log "RAUC keyring at $keyring_dir/$(basename "$keyring"), as system.conf says"
    expect_word "$e/rauc-conf.env" SRC_URI file://system.conf
    [ "$(getvar "$e/rauc-conf.env" SRC_URI | tr ' ' '\n' | grep -c '^file://system.conf$')" -eq 1 ] ||
        fail "rauc-conf's SRC_URI lists system.conf more than once"
    # BlueZ with its PAN profiles (NAP).
    expect_word "$e/bluez5.env" PACKAGECONFIG network-profiles
    expect_not_word "$e/bluez5.env" PACKAGECONFIG network
    # The board's pin map follows the machine.
    case $machine in
        raspberrypi5) expect_word "$e/cbox-board.env" CBOX_PINMAP rpi5.toml ;;
        *) expect_word "$e/cbox-board.env" CBOX_PINMAP rpi4.toml ;;
    esac
}

# A check that stops early still stops its bitbake server.
RUNNING_BUILD=""
stop_server() {
    [ -n "$RUNNING_BUILD" ] || return 0
    local build=$RUNNING_BUILD
    bb bitbake -m >/dev/null 2>&1 || true
}
trap stop_server EXIT
for m in "${MACHINES[@]}"; do
    check_machine "$m"
done
echo "ok: meta-cbox parses and resolves for ${MACHINES[*]}"
