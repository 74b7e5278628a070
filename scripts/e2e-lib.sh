# Pieces shared by the end-to-end scripts and bench/web.sh (sourced after scripts/lib.sh).
# shellcheck shell=bash

# Node.js and Debian's chromium (installed when missing; Playwright never downloads a browser) and the
# npm packages of end2end/.
e2e_prepare_browser() {
  require node chromium
  export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
  (cd "$NKVM_REPO/end2end" && npm ci --no-audit --no-fund --loglevel=error) ||
    die "npm ci in end2end/ failed (error above)"
}

# wait_http URL [PID LOG]: polls URL for up to 60 s until it answers 2xx. With PID and LOG, fails
# as soon as that process has exited, printing the tail of its log.
wait_http() {
  local url="$1" pid="${2:-}" log_file="${3:-}"
  for _ in $(seq 1 120); do
    curl -fsS "$url" >/dev/null 2>&1 && return 0
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      [[ -n "$log_file" ]] && tail -n 30 "$log_file" >&2
      log "the process behind $url exited"
      return 1
    fi
    sleep 0.5
  done
  log "$url does not answer"
  return 1
}

# new_passwords ROLE...: exports NKVM_E2E_<ROLE>_PASSWORD, random for this run only.
new_passwords() {
  local role
  for role in "$@"; do
    export "NKVM_E2E_${role^^}_PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  done
}

# users_file NKVM ROLE...: prints a users file with one user per role, named after it, whose
# password is NKVM_E2E_<ROLE>_PASSWORD (hashed with NKVM's `hash-password`).
users_file() {
  local nkvm="$1" role var
  shift
  echo "users:"
  for role in "$@"; do
    var="NKVM_E2E_${role^^}_PASSWORD"
    echo "- {name: $role, role: $role, password_hash: \"$(printf '%s\n' "${!var}" | "$nkvm" hash-password)\"}"
  done
}
