#!/usr/bin/env bash
# `make security`: three scanners over the service, reports in var/security/ (docs/security.md).
#
#   1. bandit       static analysis of app/; medium or high severity must be fixed or explained
#   2. schemathesis the portal's public and JSON endpoints against their OpenAPI description
#   3. wapiti       an authenticated scan of the running portal
#
# A scratch database (notify_security, made anew each run) and a portal on 127.0.0.1 with
# throwaway secrets; the portal is stopped on exit. Exits 1 if bandit has an unexplained finding
# of medium or high severity, schemathesis a failed check, or wapiti a finding of medium or
# higher severity not in security/wapiti-accepted.txt (or a scan did not complete); 2 if the
# checks could not start.
#
# Tunables (environment): SECURITY_PORT (8765), WAPITI_MAX_SCAN_TIME (120 s of crawling),
# WAPITI_MAX_ATTACK_TIME (40 s for each of the 15 attack modules), SCHEMATHESIS_MAX_EXAMPLES
# (100 per operation), SECURITY_SCANNERS ("bandit schemathesis wapiti": which of them to run).
# SCHEMATHESIS_PHASES (all four). `make security-quick` (in CI) is bandit and schemathesis at 20
# examples per operation without the coverage phase, which stops on an error inside
# Hypothesis on Python 3.11 (docs/security.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BIN=.venv/bin
SEC_VENV=.venv-security # wapiti3 pins older aiohttp, httpx, SQLAlchemy...: a venv of its own
PYTHON="${PYTHON:-python3}"
OUT=var/security
PORT="${SECURITY_PORT:-8765}"
BASE_URL="http://127.0.0.1:$PORT"
SCRATCH_DB=notify_security
PG_ADMIN_URL=postgresql://notify:notify@127.0.0.1:5432/postgres
WAPITI_MAX_SCAN_TIME="${WAPITI_MAX_SCAN_TIME:-120}"
WAPITI_MAX_ATTACK_TIME="${WAPITI_MAX_ATTACK_TIME:-40}"
SCHEMATHESIS_MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-100}"
SCHEMATHESIS_PHASES="${SCHEMATHESIS_PHASES:-examples,coverage,fuzzing,stateful}"
read -ra SCANNERS <<<"${SECURITY_SCANNERS:-bandit schemathesis wapiti}"
# Pinned as in setup.cfg's dev extras (bandit, schemathesis); wapiti3 lives in $SEC_VENV.
BANDIT_VERSION=1.9.4
SCHEMATHESIS_VERSION=4.32.5
WAPITI_VERSION=3.2.3
# Attack modules: the default set less ssl (plain HTTP here) and ssrf (it needs an outside
# endpoint that this machine cannot reach), plus crlf, csrf, methods, backup, htaccess.
WAPITI_MODULES=cookieflags,csp,http_headers,exec,file,sql,xss,permanentxss,redirect,upload
WAPITI_MODULES+=,crlf,csrf,methods,backup,htaccess

log() { printf '\n==> %s\n' "$*"; }
die() {
  printf 'security: %s\n' "$*" >&2
  exit 2
}

# --- scanners ------------------------------------------------------------------------------------

installed_version() { "$1/python" -m pip show "$2" 2>/dev/null | sed -n 's/^Version: //p'; }

install_scanners() {
  [[ -x $BIN/python ]] || die "no $BIN: run make install"
  local pkg want
  for pkg in "bandit==$BANDIT_VERSION" "schemathesis==$SCHEMATHESIS_VERSION"; do
    want="${pkg#*==}"
    if [[ "$(installed_version "$BIN" "${pkg%==*}")" != "$want" ]]; then
      log "installing $pkg into $BIN"
      "$BIN/pip" install --quiet "$pkg"
    fi
  done
  if wants wapiti && [[ "$(installed_version "$SEC_VENV/bin" wapiti3)" != "$WAPITI_VERSION" ]]; then
    log "installing wapiti3==$WAPITI_VERSION into $SEC_VENV"
    [[ -x $SEC_VENV/bin/python ]] || "$PYTHON" -m venv "$SEC_VENV"
    "$SEC_VENV/bin/pip" install --quiet --upgrade pip
    "$SEC_VENV/bin/pip" install --quiet "wapiti3==$WAPITI_VERSION"
  fi
}

# --- 1. bandit -----------------------------------------------------------------------------------

run_bandit() {
  log "bandit over app/"
  # A nosec must name its test and say why: `# nosec B608  # why` (text after a second # is
  # the reason; words right after the test id are read by bandit as more test names).
  local bare
  local explained='# *nosec B[0-9]{3}(, *B[0-9]{3})* +# *[^ ]'
  bare="$(grep -rnE '# *nosec' app --include='*.py' | grep -vE "$explained" || true)"
  if [[ -n $bare ]]; then
    printf 'a nosec without a test id and a reason:\n%s\n' "$bare" | tee "$OUT/bandit-nosec.txt"
    BANDIT_STATUS=1
  fi
  # Every finding, low included, for the record.
  "$BIN/bandit" -r app -q -f txt -o "$OUT/bandit-all.txt" 2>/dev/null || true
  # The gate: medium and high severity, at any confidence.
  if "$BIN/bandit" -r app -q --severity-level medium -f txt -o "$OUT/bandit.txt" 2>/dev/null; then
    BANDIT_SUMMARY="no unexplained medium or high findings"
  else
    BANDIT_STATUS=1
    BANDIT_SUMMARY="unexplained medium or high findings (see $OUT/bandit.txt)"
    cat "$OUT/bandit.txt"
  fi
  local low
  low="$(grep -c '^>> Issue' "$OUT/bandit-all.txt" || true)"
  BANDIT_SUMMARY+="; $low finding(s) at any severity, listed in $OUT/bandit-all.txt"
  echo "bandit: $BANDIT_SUMMARY"
}

# --- the portal under test -----------------------------------------------------------------------

random_secret() { "$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(48))'; }

setup_portal_env() {
  export DEV_MODE=true
  export SECRET_KEY AUTH_API_TOKEN
  SECRET_KEY="$(random_secret)"
  AUTH_API_TOKEN="$(random_secret)"
  export PORTAL_SECURE_COOKIES=false
  export PUBLIC_BASE_URL="$BASE_URL"
  export DATABASE_URL="postgresql+psycopg2://notify:notify@127.0.0.1:5432/$SCRATCH_DB"
  export EMAIL_BACKEND=outbox
  export OUTBOX_DIR="$RUN_DIR/outbox"
  # A campaign the scan sends goes to topics of its own, away from a running dev pipeline.
  export TOPIC_MAILING=security-scan.admin.mailing
  export TOPIC_DEAD_LETTER=security-scan.notifications.dead_letter
  mkdir -p "$OUTBOX_DIR"
}

create_scratch_db() {
  log "scratch database $SCRATCH_DB"
  psql -X -q -v ON_ERROR_STOP=1 "$PG_ADMIN_URL" \
    -c "DROP DATABASE IF EXISTS $SCRATCH_DB WITH (FORCE)" \
    -c "CREATE DATABASE $SCRATCH_DB OWNER notify TEMPLATE template0
        ENCODING 'UTF8' LOCALE 'C.UTF-8'"
  "$BIN/notify" db upgrade
  "$BIN/notify" templates load
  SCAN_USER=security-scan
  PEER_USER=security-peer
  SCAN_PASSWORD="$(random_secret)"
  local role=()
  if "$BIN/notify" admin create-user --help | grep -q -- '--role'; then role=(--role admin); fi
  "$BIN/notify" admin create-user "$SCAN_USER" --password "$SCAN_PASSWORD" "${role[@]}"
  "$BIN/notify" admin create-user "$PEER_USER" --password "$(random_secret)" "${role[@]}"
  local fixtures
  fixtures="$("$BIN/python" security/fixtures.py "$RUN_DIR" "$SCAN_USER" "$PEER_USER")"
  eval "$fixtures"
  export SENDGRID_WEBHOOK_PUBLIC_KEY
}

start_portal() {
  if curl -s -o /dev/null "$BASE_URL/healthz"; then
    die "something already listens on 127.0.0.1:$PORT (SECURITY_PORT=... picks another port)"
  fi
  log "portal on $BASE_URL (log: $OUT/portal.log)"
  "$BIN/notify" portal --port "$PORT" >"$OUT/portal.log" 2>&1 &
  PORTAL_PID=$!
  local i
  for i in $(seq 1 60); do
    if curl -sf -o /dev/null "$BASE_URL/healthz"; then
      SESSION_COOKIE="$("$BIN/python" security/login.py "$BASE_URL" "$SCAN_USER" \
        "$RUN_DIR/wapiti-cookies.json" <<<"$SCAN_PASSWORD")"
      return 0
    fi
    kill -0 "$PORTAL_PID" 2>/dev/null || break
    sleep 1
  done
  tail -n 30 "$OUT/portal.log" >&2
  die "the portal did not start"
}

stop_portal() {
  if [[ -n ${PORTAL_PID:-} ]] && kill -0 "$PORTAL_PID" 2>/dev/null; then
    kill "$PORTAL_PID" 2>/dev/null || true
    wait "$PORTAL_PID" 2>/dev/null || true
  fi
  PORTAL_PID=
}

# --- 2. schemathesis -----------------------------------------------------------------------------

run_schemathesis() {
  log "schemathesis: the public and JSON endpoints against their OpenAPI description"
  "$BIN/python" security/openapi.py "$OUT/openapi.json" \
    --example "campaign_id=$CAMPAIGN_ID" --example "token=$UNSUBSCRIBE_TOKEN"
  # A fresh example database each run: one kept from a run against an earlier description
  # replays cases that no longer fit it (and once crashed Hypothesis's lambda printing on 3.11).
  rm -rf "$OUT/schemathesis" "$OUT/schemathesis-cache"
  local status=0
  SCHEMATHESIS_HOOKS=security/schemathesis_hooks.py \
    SECURITY_SENDGRID_PRIVATE_KEY="$SENDGRID_PRIVATE_KEY_FILE" \
    SECURITY_SESSION_COOKIE="${SESSION_COOKIE#*=}" \
    "$BIN/schemathesis" --config-file security/schemathesis.toml run "$OUT/openapi.json" \
    --url "$BASE_URL" \
    --checks all \
    --max-examples "$SCHEMATHESIS_MAX_EXAMPLES" \
    --phases "$SCHEMATHESIS_PHASES" \
    --workers 2 \
    --request-timeout 30 \
    --generation-database none \
    --report junit,ndjson --report-dir "$OUT/schemathesis" \
    --no-color 2>&1 | tee "$OUT/schemathesis.txt" || status=$?
  SCHEMATHESIS_STATUS=$status
  if ((status == 0)); then
    SCHEMATHESIS_SUMMARY="every check passed"
  else
    SCHEMATHESIS_SUMMARY="failed (exit $status, see $OUT/schemathesis.txt)"
  fi
  echo "schemathesis: $SCHEMATHESIS_SUMMARY"
}

# --- 3. wapiti -----------------------------------------------------------------------------------

run_wapiti() {
  log "wapiti: an authenticated scan of $BASE_URL/" \
    "(crawl ${WAPITI_MAX_SCAN_TIME} s, attacks ${WAPITI_MAX_ATTACK_TIME} s a module)"
  local status=0
  rm -rf "$OUT/wapiti.json" "$RUN_DIR/wapiti"
  # -x: signing out would end the scan's session (a logout ends every session of the user), and
  # so would the scan user's own account form (deactivated or a new role: sessions end); the
  # other portal user's form stays in the scan. The outside endpoints (payloads name them, and
  # Wapiti resolves the DNS one at start) are a closed local port and a local address.
  local admin=$BASE_URL/admin start=() page
  for page in "$admin/" "$admin/mailings" "$admin/mailings/new" "$admin/mailings/$CAMPAIGN_ID" \
    "$admin/template/list" "$admin/template/create" "$admin/notification/list" \
    "$admin/delivery/list" "$admin/dead-letter/list" "$admin/admin-user/list" \
    "$admin/admin-user/edit/$PEER_USER_ID" "$admin/audit-entry/list" "$admin/schedule" \
    "$admin/outbox" "$admin/api/mailings/$CAMPAIGN_ID/progress" \
    "$BASE_URL/unsubscribe?token=$UNSUBSCRIBE_TOKEN" "$BASE_URL/login" "$BASE_URL/healthz" \
    "$BASE_URL/metrics"; do
    start+=(-s "$page")
  done
  # SQLAdmin's list links combine filters, sorting and paging into tens of thousands of URLs:
  # -r drops the paging parameters from them, -S polite keeps a few URLs per path and set of
  # parameter names, so the attacks' time goes to distinct inputs. --max-scan-time bounds the
  # crawl, --max-attack-time each attack module.
  "$SEC_VENV/bin/wapiti" -u "$BASE_URL/" --scope folder "${start[@]}" \
    -x "$BASE_URL/logout*" -x "$admin/logout*" -x "$admin/admin-user/edit/$SCAN_USER_ID*" \
    -c "$RUN_DIR/wapiti-cookies.json" \
    -m "$WAPITI_MODULES" -S polite -r page -r pageSize -r sort \
    --max-scan-time "$WAPITI_MAX_SCAN_TIME" --max-attack-time "$WAPITI_MAX_ATTACK_TIME" \
    --external-endpoint http://127.0.0.1:9/ --dns-endpoint 127.0.0.1 \
    --store-session "$RUN_DIR/wapiti" --store-config "$RUN_DIR/wapiti-config" --flush-session \
    --no-bugreport --tasks 4 -t 20 -v 1 \
    -f json -o "$OUT/wapiti.json" >"$OUT/wapiti.log" 2>&1 || status=$?
  tail -n 5 "$OUT/wapiti.log"
  if ((status != 0)) || [[ ! -s $OUT/wapiti.json ]]; then
    WAPITI_STATUS=1
    WAPITI_SUMMARY="the scan did not complete (exit $status, see $OUT/wapiti.log)"
    return
  fi
  "$BIN/python" security/wapiti_gate.py "$OUT/wapiti.json" security/wapiti-accepted.txt |
    tee "$OUT/wapiti-findings.txt" || WAPITI_STATUS=1
  WAPITI_SUMMARY="$(tail -n 1 "$OUT/wapiti-findings.txt")"
  # The session must have lasted the whole scan, or the admin UI went unscanned.
  local still
  still="$(curl -s -o /dev/null -w '%{http_code}' -H "Cookie: $SESSION_COOKIE" "$admin/mailings")"
  if [[ $still != 200 ]]; then
    WAPITI_STATUS=1
    WAPITI_SUMMARY+="; the scan's session ended during the scan: its results are incomplete"
  fi
}

# --- what the portal logged ---------------------------------------------------------------------

# Server errors during the scans, whichever scanner saw them (Wapiti reports only some: not those
# of the files it guesses, e.g. `.../details/ID.bak`). For the record; the gate is the scanners'.
report_portal_errors() {
  local count
  count="$(grep -cE '" 500$' "$OUT/portal.log" || true)"
  # The exception ending each traceback of an unhandled error.
  awk '/Exception in ASGI application/ { t = 1; last = ""; next }
       t && /^\[[0-9][0-9][0-9][0-9]-/ { if (last != "") print last; t = 0 }
       t && /^[A-Za-z_][A-Za-z0-9_.]*: / { last = substr($0, 1, 160) }
       END { if (t && last != "") print last }' "$OUT/portal.log" |
    sed -E "s/'[^']*'/'...'/g" | sort | uniq -c | sort -rn >"$OUT/portal-errors.txt"
  PORTAL_SUMMARY="$count response(s) with status 500 during the scans"
  if [[ -s $OUT/portal-errors.txt ]]; then
    PORTAL_SUMMARY+="; their exceptions, by count, in $OUT/portal-errors.txt"
    printf 'portal: %s:\n' "$PORTAL_SUMMARY"
    sed 's/^/    /' "$OUT/portal-errors.txt"
  fi
}

# --- main ----------------------------------------------------------------------------------------

START=$SECONDS
BANDIT_STATUS=0 SCHEMATHESIS_STATUS=0 WAPITI_STATUS=0
BANDIT_SUMMARY= SCHEMATHESIS_SUMMARY= WAPITI_SUMMARY= PORTAL_SUMMARY=
PORTAL_PID=
mkdir -p "$OUT"
RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/notify-security.XXXXXX")"
chmod 700 "$RUN_DIR"
cleanup() {
  stop_portal
  rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wants() { [[ " ${SCANNERS[*]} " == *" $1 "* ]]; }
for scanner in "${SCANNERS[@]}"; do
  [[ $scanner =~ ^(bandit|schemathesis|wapiti)$ ]] ||
    die "unknown scanner $scanner (SECURITY_SCANNERS: bandit schemathesis wapiti)"
done

install_scanners
if wants bandit; then run_bandit; fi
if wants schemathesis || wants wapiti; then
  setup_portal_env
  create_scratch_db
  start_portal
  if wants schemathesis; then run_schemathesis; fi
  if wants wapiti; then run_wapiti; fi
  stop_portal
  report_portal_errors
fi

log "summary ($((SECONDS - START)) s; reports in $OUT/)"
status=0
for scanner in "${SCANNERS[@]}"; do
  var_status="${scanner^^}_STATUS" var_summary="${scanner^^}_SUMMARY"
  if ((${!var_status} == 0)); then verdict=ok; else verdict=FAILED status=1; fi
  printf '  %-13s %-7s %s\n' "$scanner" "$verdict" "${!var_summary}"
done
if [[ -n $PORTAL_SUMMARY ]]; then printf '  %-13s %-7s %s\n' portal info "$PORTAL_SUMMARY"; fi
exit "$status"
