# Shared helpers for scripts/*.sh (sourced, not run).

# Starts a stage: prints how long the previous one took, then the new one's name.
say() {
    local now
    now=$(date +%s)
    if [ -n "${_stage_started:-}" ]; then
        printf '    [%s: %d s; %d s in all]\n' "$_stage_name" $((now - _stage_started)) $((now - _run_started))
    fi
    _run_started=${_run_started:-$now}
    _stage_name=$*
    _stage_started=$now
    printf '\n==> %s\n' "$*"
}

# Installs the Debian packages among "$@" whose commands or files are missing.
# Arguments are "package:probe" pairs; the probe is a command name or an absolute path.
need_debian() {
    local missing=()
    for pair in "$@"; do
        local pkg=${pair%%:*} probe=${pair#*:}
        if [[ $probe == /* ]]; then [ -e "$probe" ] && continue
        else command -v "$probe" >/dev/null 2>&1 && continue; fi
        missing+=("$pkg")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        if [ "$(id -u)" -ne 0 ]; then
            echo "need root to apt-get install ${missing[*]} (or install them yourself)" >&2
            exit 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

# The C libraries the host links and their build tools: SAML (samael) binds libxml2 and xmlsec1
# (OpenSSL) with bindgen, which needs libclang.
need_host_build_deps() {
    need_debian gcc:gcc pkg-config:pkg-config libssl-dev:/usr/lib/x86_64-linux-gnu/pkgconfig/openssl.pc \
        libxml2-dev:/usr/lib/x86_64-linux-gnu/pkgconfig/libxml-2.0.pc libxmlsec1-dev:/usr/bin/xmlsec1-config \
        libclang-dev:/usr/lib/llvm-14/lib/libclang.so
}

# Installs Node and npm when missing, then the web dependencies, and builds the dashboard.
build_web() {
    need_debian nodejs:node npm:npm
    say "installing the dashboard's npm packages (web/)"
    (cd web && npm ci --no-audit --no-fund --loglevel=error)
    say "type-checking and building the dashboard (web/dist)"
    (cd web && npm run build)
}

# The cargo target directory as an absolute path (CARGO_TARGET_DIR may be relative or absolute).
target_dir() {
    case "${CARGO_TARGET_DIR:-target}" in
        /*) echo "$CARGO_TARGET_DIR" ;;
        *) echo "$(pwd)/${CARGO_TARGET_DIR:-target}" ;;
    esac
}
