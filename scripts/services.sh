#!/usr/bin/env bash
# Local infrastructure for the notification service: PostgreSQL, RabbitMQ, Apache Kafka (KRaft) and
# a Schema Registry, all bound to 127.0.0.1 only.
#
#   bash scripts/services.sh [start]   install what is missing, start what is not running, wait until ready
#   bash scripts/services.sh stop      stop them all
#   bash scripts/services.sh restart postgres|rabbitmq|kafka|schema-registry   restart one, keeping its data
#   bash scripts/services.sh crash kafka           kill the broker (SIGKILL), start it again, wait until ready
#   bash scripts/services.sh pause rabbitmq SECONDS  stop RabbitMQ's application that long, then start it
#   bash scripts/services.sh status    show what runs and where it listens (exit 1 if something is down)
#
# Written for Debian as root without systemd or Docker (CI runs it on a fresh clone, maybe on a bare
# machine), so it installs packages itself and starts the daemons directly. Idempotent: a second
# `start` with everything up only checks and returns in a few seconds.
#
# Endpoints:
#   PostgreSQL  postgresql://notify:notify@127.0.0.1:5432/notify   (and .../notify_test)
#   RabbitMQ    amqp://notify:notify@127.0.0.1:5672/notify
#   Kafka       127.0.0.1:9092 (PLAINTEXT; KRaft controller on 127.0.0.1:9093)
#               127.0.0.1:9094 (SASL_SSL: SCRAM-SHA-512/256 user notify / notify-kafka)
#   Schema Registry  http://127.0.0.1:8085/apis/ccompat/v7  (Confluent REST API; Apicurio Registry
#               from Maven Central, in-memory storage: schemas are gone after a restart)
#   TLS         PostgreSQL (sslmode=verify-full), RabbitMQ amqps://...:5671 and Kafka's SASL_SSL
#               listener serve certificates of a local CA generated here: var/tls/ca.pem
#
# Tunables (environment): SERVICES_TIMEOUT (seconds to wait for each service, default 180),
# KAFKA_HEAP_OPTS (default "-Xmx1G -Xms512M").
set -euo pipefail

# apt, pg_ctlcluster, rabbitmq-server live in sbin, which a non-login root shell may not have on PATH.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR="$ROOT/var"
LOGDIR="$VAR/log"
TLS_DIR="$VAR/tls"
HOST=127.0.0.1
TIMEOUT="${SERVICES_TIMEOUT:-180}"

PG_PORT=5432
PG_USER=notify PG_PASSWORD=notify
PG_DATABASES=(notify notify_test)

RABBIT_PORT=5672
RABBIT_TLS_PORT=5671
RABBIT_DIST_PORT=25672   # Erlang distribution port (node-to-node / CLI); RabbitMQ's default is AMQP port + 20000
EPMD_PORT=4369
RABBIT_VHOST=notify RABBIT_USER=notify RABBIT_PASSWORD=notify

KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
KAFKA_SASL_SSL_PORT=9094
KAFKA_SCRAM_USER=notify KAFKA_SCRAM_PASSWORD=notify-kafka
KAFKA_VERSION_FALLBACK=3.9.0   # tried when the pom's version (3.9.1) cannot be resolved
KAFKA_DIR="$VAR/kafka"
KAFKA_LIBS="$VAR/cache/kafka-libs"
KAFKA_POM="$ROOT/scripts/kafka/pom.xml"
KAFKA_PID="$KAFKA_DIR/kafka.pid"
KAFKA_LOG="$KAFKA_DIR/logs/server.log"
KAFKA_OUT="$KAFKA_DIR/logs/kafka.out"   # JVM stdout/stderr (crashes before log4j is up land here)
KAFKA_TLS="$KAFKA_DIR/tls"

REGISTRY_PORT=8085
REGISTRY_POM="$ROOT/scripts/schema-registry/pom.xml"
REGISTRY_DIR="$VAR/cache/schema-registry"
REGISTRY_PID="$VAR/schema-registry.pid"
REGISTRY_LOG="$LOGDIR/schema-registry.log"

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
log() { printf '[services] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# die, showing the end of the log that most likely explains why.
die_with_log() {
  local msg=$1; shift
  log "ERROR: $msg"
  local f
  for f in "$@"; do
    if [[ -s $f ]]; then
      log "---- last 40 lines of $f ----"
      tail -n 40 "$f" >&2 || true
    fi
  done
  exit 1
}

# The local stack's own CA (var/tls/ca.pem) and one server certificate per service, for
# 127.0.0.1 and localhost, made once with openssl: the TLS listeners of PostgreSQL, RabbitMQ and
# Kafka serve them, so clients verify the servers as they would in production.
tls_ca() {
  [[ -s $TLS_DIR/ca.pem && -s $TLS_DIR/ca.key ]] && return 0
  mkdir -p "$TLS_DIR" "$LOGDIR"
  log "generating the local CA in $TLS_DIR"
  openssl req -x509 -new -nodes -newkey rsa:2048 -days 3650 -subj "/CN=notify local CA" \
    -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" >"$LOGDIR/tls.log" 2>&1 ||
    die_with_log "could not generate the local CA" "$LOGDIR/tls.log"
  chmod 600 "$TLS_DIR/ca.key"
}

# tls_server_cert NAME: $TLS_DIR/NAME.key and NAME.crt, signed by the local CA
tls_server_cert() {
  local name=$1
  tls_ca
  [[ -s $TLS_DIR/$name.crt && -s $TLS_DIR/$name.key && $TLS_DIR/$name.crt -nt $TLS_DIR/ca.pem ]] && return 0
  log "generating a $name server certificate in $TLS_DIR"
  {
    openssl req -new -nodes -newkey rsa:2048 -subj "/CN=127.0.0.1" \
      -keyout "$TLS_DIR/$name.key" -out "$TLS_DIR/$name.csr" &&
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$TLS_DIR/$name.ext" &&
    openssl x509 -req -in "$TLS_DIR/$name.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
      -CAcreateserial -days 3650 -extfile "$TLS_DIR/$name.ext" -out "$TLS_DIR/$name.crt"
  } >"$LOGDIR/tls.log" 2>&1 || die_with_log "could not generate the $name certificate" "$LOGDIR/tls.log"
  chmod 600 "$TLS_DIR/$name.key"
}

# install_changed MODE SRC DEST OWNER: copy SRC to DEST (owned by OWNER) unless DEST has the same
# bytes already; true when it copied (a daemon holding the old file must then reload it).
install_changed() {
  [[ -f $3 ]] && cmp -s "$2" "$3" && return 1
  install -m "$1" -o "$4" -g "$4" "$2" "$3"
}

need_root() {
  [[ $EUID -eq 0 ]] || die "run as root (installs packages and starts system daemons as their own users)"
}

# true when something accepts TCP connections on host:port (bash's /dev/tcp, no extra tool needed)
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_for DESCRIPTION LOGFILE... -- COMMAND...: poll COMMAND every 0.5 s until it succeeds;
# after $TIMEOUT seconds fail with the tail of the log files.
wait_for() {
  local desc=$1; shift
  local logs=()
  while [[ $1 != -- ]]; do logs+=("$1"); shift; done
  shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      die_with_log "$desc: not ready after ${TIMEOUT}s" "${logs[@]}"
    fi
    sleep 0.5
  done
}

# Listening sockets for the given ports (ss from iproute2), to show that they are loopback-only.
show_listeners() {
  command -v ss >/dev/null || { log "(ss not found; cannot list listeners)"; return 0; }
  local re
  re="$(printf ':%s|' "$@")"; re="${re%|}"
  ss -Hltnp 2>/dev/null | awk -v re="($re)\$" '$4 ~ re {print "  " $4 "  " $6}' | sort -u
}

# Any of these ports bound to a non-loopback address? (prints offenders, returns 0 when some exist)
public_listeners() {
  command -v ss >/dev/null || return 1
  local re
  re="$(printf ':%s|' "$@")"; re="${re%|}"
  ss -Hltn 2>/dev/null | awk -v re="($re)\$" '$4 ~ re && $4 !~ /^(127\.|\[::1\]|\[::ffff:127\.)/ {print $4; found=1} END {exit !found}'
}

# ---------------------------------------------------------------------------------------------
# packages
# ---------------------------------------------------------------------------------------------
java_major() { "$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }

# Pick a Java 17+ runtime: $JAVA_HOME, then `java` on PATH, then anything under /usr/lib/jvm
# (an older default java may shadow a newer one installed beside it).
find_java() {
  local c v
  for c in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java || true)" /usr/lib/jvm/*/bin/java; do
    [[ -n $c && -x $c ]] || continue
    v="$(java_major "$c")"
    if [[ -n $v ]] && ((v >= 17)); then
      JAVA="$c"
      return 0
    fi
  done
  return 1
}

ensure_packages() {
  local missing=()
  # postgresql (metapackage) = server of Debian's default major version + the pg_*cluster tooling
  if ! command -v pg_lsclusters >/dev/null || ! compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; then
    missing+=(postgresql)
  fi
  [[ -x /usr/sbin/rabbitmq-server ]] || missing+=(rabbitmq-server)
  find_java || missing+=(JAVA)   # resolved to a package name after apt-get update
  command -v mvn >/dev/null || missing+=(maven)
  command -v ss >/dev/null || missing+=(iproute2)   # only for the loopback-only check / status
  command -v curl >/dev/null || missing+=(curl)   # the Schema Registry's readiness check
  ((${#missing[@]})) || return 0

  need_root
  export DEBIAN_FRONTEND=noninteractive
  # initdb in the postgresql postinst takes the locale from the environment; without one a bare
  # machine would get an SQL_ASCII cluster.
  export LANG=C.UTF-8 LC_ALL=C.UTF-8
  log "installing missing packages: ${missing[*]} (apt-get update first)"
  apt-get update -q >/dev/null
  local i
  for i in "${!missing[@]}"; do
    if [[ ${missing[$i]} == JAVA ]]; then
      # Debian 12's default JRE is 17; on a distribution where the default is older ask for 17 by name.
      if apt-cache show openjdk-17-jre-headless >/dev/null 2>&1; then
        missing[$i]=openjdk-17-jre-headless
      else
        missing[$i]=default-jre-headless
      fi
    fi
  done

  # Package postinst scripts try to start their services (invoke-rc.d). Without systemd/init that
  # fails or leaves daemons bound to all interfaces with default settings; we start them ourselves.
  # A policy-rc.d exiting 101 forbids that, only for the duration of the install. An existing
  # policy-rc.d (container images ship one) is left alone.
  local own_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\n# temporary, from scripts/services.sh: no service starts during apt-get install\nexit 101\n' \
      >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    own_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -q --no-install-recommends "${missing[@]}" >"$LOGDIR/apt-install.log" 2>&1 ||
    die_with_log "apt-get install ${missing[*]} failed" "$LOGDIR/apt-install.log"
  if ((own_policy)); then
    rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
  find_java || die "no Java 17+ runtime found after installing ${missing[*]}"
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL (Debian cluster tooling)
# ---------------------------------------------------------------------------------------------
# The data directory stays where Debian puts it (/var/lib/postgresql/<ver>/<cluster>, logs in
# /var/log/postgresql): postgres refuses to run as root, its data dir must belong to the postgres
# user, and the repo checkout (owned by root, possibly not traversable by postgres) is no place
# for that. pg_ctlcluster runs the server as the cluster owner for us.

# Sets PG_VER / PG_CLUSTER: the cluster on port 5432 if there is one, else Debian's "main" cluster
# of the newest installed server version (created on port 5432 if missing).
pg_select_cluster() {
  local line
  line="$(pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p {print $1, $2; exit}')"
  if [[ -n $line ]]; then
    read -r PG_VER PG_CLUSTER <<<"$line"
    return 0
  fi
  PG_VER="$(basename "$(compgen -G '/usr/lib/postgresql/*/bin/postgres' | sort -V | tail -n1 | xargs dirname | xargs dirname)")"
  PG_CLUSTER=main
  if pg_lsclusters -h | awk -v v="$PG_VER" '$1 == v && $2 == "main" {f=1} END {exit !f}'; then
    log "PostgreSQL $PG_VER/main exists on another port: moving it to $PG_PORT"
    pg_conftool "$PG_VER" main set port "$PG_PORT"
  else
    log "creating PostgreSQL cluster $PG_VER/main on port $PG_PORT"
    pg_createcluster --port "$PG_PORT" --locale C.UTF-8 "$PG_VER" main >"$LOGDIR/pg_createcluster.log" 2>&1 ||
      die_with_log "pg_createcluster failed" "$LOGDIR/pg_createcluster.log"
  fi
}

pg_status() { pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VER" -v c="$PG_CLUSTER" '$1 == v && $2 == c {print $4}'; }

pg_psql_admin() {
  # as the postgres superuser over the Unix socket (peer auth); cd / so psql does not complain
  # about a working directory the postgres user cannot read
  (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres "$@")
}

start_postgres() {
  pg_select_cluster
  local pglog="/var/log/postgresql/postgresql-$PG_VER-$PG_CLUSTER.log"
  local need_restart=0
  # Loopback only (Debian's default 'localhost' also binds ::1 and depends on name resolution).
  # A drop-in in conf.d (included at the end of Debian's postgresql.conf, so it wins) rather than
  # pg_conftool: `pg_conftool set listen_addresses 127.0.0.1` writes the value unquoted, which
  # postgres rejects as a syntax error.
  local confd="/etc/postgresql/$PG_VER/$PG_CLUSTER/conf.d"
  local pgtls="/etc/postgresql/$PG_VER/$PG_CLUSTER/notify-tls"
  install -d -o postgres -g postgres "$confd" "$pgtls"
  # TLS with the local CA's certificate (Debian's snakeoil one names the host, not 127.0.0.1):
  # clients can use sslmode=verify-full with sslrootcert=var/tls/ca.pem.
  tls_server_cert postgresql
  # A new certificate (another checkout's CA, say) is read on restart: the key only its owner reads.
  install_changed 644 "$TLS_DIR/postgresql.crt" "$pgtls/server.crt" postgres && need_restart=1
  install_changed 600 "$TLS_DIR/postgresql.key" "$pgtls/server.key" postgres && need_restart=1
  if write_if_changed "$confd/50-notify-services.conf" <<EOF; then
# Written by scripts/services.sh (notification service dev/CI stack): loopback only, TLS offered.
listen_addresses = '$HOST'
ssl = on
ssl_cert_file = '$pgtls/server.crt'
ssl_key_file = '$pgtls/server.key'
EOF
    chown postgres:postgres "$confd/50-notify-services.conf"
    chmod 644 "$confd/50-notify-services.conf"
    need_restart=1
  fi
  # the socket directory lives on /run, which may be empty after a reboot
  install -d -o postgres -g postgres -m 2775 /var/run/postgresql

  case "$(pg_status)" in
    online*)
      if ((need_restart)); then
        log "restarting PostgreSQL $PG_VER/$PG_CLUSTER to apply its configuration"
        pg_ctlcluster "$PG_VER" "$PG_CLUSTER" restart </dev/null >"$LOGDIR/pg_ctlcluster.log" 2>&1 9>&- ||
          die_with_log "pg_ctlcluster restart failed" "$LOGDIR/pg_ctlcluster.log" "$pglog"
      fi
      ;;
    *)
      log "starting PostgreSQL $PG_VER/$PG_CLUSTER"
      # stdio away from ours: a daemon holding our stdout open would make a caller that pipes
      # this script (CI) wait forever.
      pg_ctlcluster "$PG_VER" "$PG_CLUSTER" start </dev/null >"$LOGDIR/pg_ctlcluster.log" 2>&1 9>&- ||
        die_with_log "pg_ctlcluster start failed" "$LOGDIR/pg_ctlcluster.log" "$pglog"
      ;;
  esac
  wait_for "PostgreSQL on $HOST:$PG_PORT" "$pglog" -- pg_isready -q -h "$HOST" -p "$PG_PORT"

  # Role and databases, idempotently. ALTER ROLE every time keeps the password what we document
  # even if someone changed it. Databases are UTF-8 whatever locale the cluster was created with.
  local db sql
  sql="SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', '$PG_USER', '$PG_PASSWORD')
         WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER') \\gexec
       ALTER ROLE $PG_USER WITH LOGIN CREATEDB PASSWORD '$PG_PASSWORD';"
  for db in "${PG_DATABASES[@]}"; do
    sql+="
       SELECT format('CREATE DATABASE %I OWNER %I TEMPLATE template0 ENCODING %L LOCALE %L', '$db', '$PG_USER', 'UTF8', 'C.UTF-8')
         WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$db') \\gexec
       ALTER DATABASE $db OWNER TO $PG_USER;"
  done
  pg_psql_admin <<<"$sql" || die "creating PostgreSQL role/databases failed"

  # The check a client will do: password login over TCP.
  PGCONNECT_TIMEOUT=5 psql -X -q -At "postgresql://$PG_USER:$PG_PASSWORD@$HOST:$PG_PORT/${PG_DATABASES[0]}" \
    -c 'select 1' >/dev/null || die "cannot log in as $PG_USER to ${PG_DATABASES[0]} on $HOST:$PG_PORT"
}

stop_postgres() {
  command -v pg_lsclusters >/dev/null || return 0
  pg_select_cluster_quiet || return 0
  if [[ "$(pg_status)" == online* ]]; then
    log "stopping PostgreSQL $PG_VER/$PG_CLUSTER"
    pg_ctlcluster "$PG_VER" "$PG_CLUSTER" stop </dev/null 9>&- || log "pg_ctlcluster stop failed"
  fi
}

# like pg_select_cluster, but never creates or changes anything (for stop/status)
pg_select_cluster_quiet() {
  local line
  line="$(pg_lsclusters -h 2>/dev/null | awk -v p="$PG_PORT" '$3 == p {print $1, $2; exit}')"
  [[ -n $line ]] || return 1
  read -r PG_VER PG_CLUSTER <<<"$line"
}

# ---------------------------------------------------------------------------------------------
# RabbitMQ
# ---------------------------------------------------------------------------------------------
# Data and logs stay in Debian's places (/var/lib/rabbitmq, /var/log/rabbitmq): the Debian wrapper
# runs the broker and rabbitmqctl as the rabbitmq user, which owns those (and shares the Erlang
# cookie there).
rabbit_env() {
  # Fixed node name: does not depend on the hostname resolving, and keeps the same database
  # directory (/var/lib/rabbitmq/mnesia/rabbit@localhost) whatever the machine is called.
  export RABBITMQ_NODENAME=rabbit@localhost
  # `rabbitmq-server -detached` listens on every interface unless told otherwise (measured):
  export RABBITMQ_NODE_IP_ADDRESS=$HOST RABBITMQ_NODE_PORT=$RABBIT_PORT RABBITMQ_DIST_PORT=$RABBIT_DIST_PORT
  # epmd is started by the first Erlang node (server or CLI) and binds 0.0.0.0 unless this is set
  export ERL_EPMD_ADDRESS=$HOST
  # the distribution listener (25672) follows the kernel's inet_dist_use_interface, not NODE_IP_ADDRESS
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  RABBIT_LOG="/var/log/rabbitmq/$RABBITMQ_NODENAME.log"
}

rmqctl() { rabbitmqctl -q "$@" </dev/null 9>&-; }

# An amqps listener on 5671 beside amqp on 5672, with the local CA's certificate.
rabbit_tls_config() {
  local dir=/etc/rabbitmq/notify-tls changed=1
  tls_server_cert rabbitmq
  install -d -o rabbitmq -g rabbitmq "$dir" /etc/rabbitmq/conf.d
  install_changed 644 "$TLS_DIR/ca.pem" "$dir/ca.pem" rabbitmq && changed=0
  install_changed 644 "$TLS_DIR/rabbitmq.crt" "$dir/server.crt" rabbitmq && changed=0
  install_changed 600 "$TLS_DIR/rabbitmq.key" "$dir/server.key" rabbitmq && changed=0
  # returns 0 (true) when a file changed, so a running broker is restarted to apply it
  write_if_changed /etc/rabbitmq/conf.d/50-notify-tls.conf <<EOF || return $changed
# Written by scripts/services.sh (notification service dev/CI stack): amqps on loopback.
listeners.ssl.1 = $HOST:$RABBIT_TLS_PORT
ssl_options.cacertfile = $dir/ca.pem
ssl_options.certfile = $dir/server.crt
ssl_options.keyfile = $dir/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
EOF
  chmod 644 /etc/rabbitmq/conf.d/50-notify-tls.conf
}

start_rabbitmq() {
  rabbit_env
  if rabbit_tls_config && port_open "$HOST" "$RABBIT_PORT"; then
    log "restarting RabbitMQ to apply its TLS listener"
    stop_rabbitmq
  fi
  if ! port_open "$HOST" "$RABBIT_PORT"; then
    # An epmd left over from an earlier run without ERL_EPMD_ADDRESS would keep 4369 public.
    if public_listeners "$EPMD_PORT" >/dev/null; then
      log "epmd listens beyond loopback; restarting it on $HOST"
      epmd -kill >/dev/null 2>&1 || true
    fi
    log "starting RabbitMQ"
    # -detached forks the Erlang VM into the background; its stdio goes to a file, not to our caller.
    rabbitmq-server -detached </dev/null >>"$LOGDIR/rabbitmq-server.out" 2>&1 9>&- ||
      die_with_log "rabbitmq-server -detached failed" "$LOGDIR/rabbitmq-server.out" "$RABBIT_LOG"
    # await_startup fails fast while the node is not reachable yet, so poll it.
    wait_for "RabbitMQ on $HOST:$RABBIT_PORT" "$LOGDIR/rabbitmq-server.out" "$RABBIT_LOG" -- \
      rmqctl await_startup --timeout 10
  fi

  # Vhost, user and permissions. Fast path (already set up): 2 CLI calls instead of 5.
  if rmqctl list_permissions -p "$RABBIT_VHOST" 2>/dev/null |
       awk -v u="$RABBIT_USER" -F'\t' '$1 == u && $2 == ".*" && $3 == ".*" && $4 == ".*" {f=1} END {exit !f}' &&
     rmqctl authenticate_user "$RABBIT_USER" "$RABBIT_PASSWORD" >/dev/null 2>&1; then
    return 0
  fi
  log "configuring RabbitMQ vhost '$RABBIT_VHOST' and user '$RABBIT_USER'"
  rmqctl list_vhosts name | grep -qxF "$RABBIT_VHOST" || rmqctl add_vhost "$RABBIT_VHOST" >/dev/null
  if rmqctl list_users | awk -v u="$RABBIT_USER" -F'\t' '$1 == u {f=1} END {exit !f}'; then
    rmqctl change_password "$RABBIT_USER" "$RABBIT_PASSWORD" >/dev/null
  else
    rmqctl add_user "$RABBIT_USER" "$RABBIT_PASSWORD" >/dev/null
  fi
  rmqctl set_permissions -p "$RABBIT_VHOST" "$RABBIT_USER" '.*' '.*' '.*' >/dev/null
}

stop_rabbitmq() {
  [[ -x /usr/sbin/rabbitmq-server ]] || return 0
  rabbit_env
  if port_open "$HOST" "$RABBIT_PORT" || rmqctl ping >/dev/null 2>&1; then
    log "stopping RabbitMQ"
    # shutdown (unlike stop) waits until the VM has exited
    rmqctl shutdown >/dev/null 2>&1 || log "rabbitmqctl shutdown failed"
  fi
  # epmd outlives the node; stop it too when no other Erlang node uses it
  if command -v epmd >/dev/null && port_open "$HOST" "$EPMD_PORT" && ! epmd -names 2>/dev/null | grep -q '^name '; then
    epmd -kill >/dev/null 2>&1 || true
  fi
}

# ---------------------------------------------------------------------------------------------
# Kafka (Apache Kafka jars from Maven Central, KRaft combined broker+controller)
# ---------------------------------------------------------------------------------------------
kafka_fetch_libs() {
  # Re-resolve only when the pom changed (stamp = pom checksum).
  local stamp="$KAFKA_LIBS/.pom.sha256" want
  want="$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)"
  if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]] && compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null; then
    return 0
  fi
  find_java || die "no Java 17+ runtime"
  export JAVA_HOME="${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$JAVA")")")}"
  log "fetching Kafka jars with Maven into $KAFKA_LIBS (first run only)"
  rm -rf "$KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS"
  if ! mvn -B -q -f "$KAFKA_POM" dependency:copy-dependencies -DoutputDirectory="$KAFKA_LIBS" \
       >"$LOGDIR/mvn-kafka.log" 2>&1; then
    log "Kafka from the pom could not be resolved; trying $KAFKA_VERSION_FALLBACK"
    rm -rf "$KAFKA_LIBS"
    mkdir -p "$KAFKA_LIBS"
    mvn -B -q -f "$KAFKA_POM" -Dkafka.version="$KAFKA_VERSION_FALLBACK" dependency:copy-dependencies \
      -DoutputDirectory="$KAFKA_LIBS" >>"$LOGDIR/mvn-kafka.log" 2>&1 ||
      die_with_log "mvn could not fetch the Kafka jars" "$LOGDIR/mvn-kafka.log"
  fi
  echo "$want" >"$stamp"
}

# Write FILE from stdin only when the content differs (so a running broker's config is not touched
# needlessly); returns 0 when it changed.
write_if_changed() {
  local f=$1 tmp
  tmp="$(mktemp "$f.XXXXXX")"
  cat >"$tmp"
  if [[ -f $f ]] && cmp -s "$tmp" "$f"; then
    rm -f "$tmp"
    return 1
  fi
  mv -f "$tmp" "$f"
  return 0
}

# Kafka's PEM key store for the SASL_SSL listener: the unencrypted PKCS#8 key, then the chain.
kafka_tls() {
  tls_server_cert kafka
  [[ -s $KAFKA_TLS/broker.pem && $KAFKA_TLS/broker.pem -nt $TLS_DIR/kafka.crt ]] && return 0
  mkdir -p "$KAFKA_TLS"
  cat "$TLS_DIR/kafka.key" "$TLS_DIR/kafka.crt" "$TLS_DIR/ca.pem" >"$KAFKA_TLS/broker.pem"
  chmod 600 "$KAFKA_TLS/broker.pem"
}

# SCRAM credentials live in the cluster metadata: set them once per formatted storage.
kafka_scram_users() {
  local stamp="$KAFKA_DIR/data/.scram-$KAFKA_SCRAM_USER"
  [[ -f $stamp ]] && return 0
  local mechanism
  for mechanism in SCRAM-SHA-512 SCRAM-SHA-256; do
    kafka_tool kafka.admin.ConfigCommand --bootstrap-server "$HOST:$KAFKA_PORT" --alter \
      --add-config "$mechanism=[password=$KAFKA_SCRAM_PASSWORD]" \
      --entity-type users --entity-name "$KAFKA_SCRAM_USER" >>"$LOGDIR/kafka-scram.log" 2>&1 ||
      die_with_log "could not create the Kafka SCRAM user" "$LOGDIR/kafka-scram.log"
  done
  touch "$stamp"
}

kafka_write_config() {
  mkdir -p "$KAFKA_DIR/data" "$KAFKA_DIR/logs"
  kafka_tls
  local changed=0
  write_if_changed "$KAFKA_DIR/server.properties" <<EOF && changed=1
# Generated by scripts/services.sh; edits are overwritten.
# Single node, KRaft combined mode: this process is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$KAFKA_PORT,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT,SASL_SSL://$HOST:$KAFKA_SASL_SSL_PORT
advertised.listeners=PLAINTEXT://$HOST:$KAFKA_PORT,SASL_SSL://$HOST:$KAFKA_SASL_SSL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
# The secured listener, as managed clusters run it: TLS with a CA-signed certificate, SCRAM users.
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$KAFKA_TLS/broker.pem
log.dirs=$KAFKA_DIR/data
# One broker: internal topics cannot have more than one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
# Consumer groups (Faust, tests) start at once instead of waiting 3 s for more members.
group.initial.rebalance.delay.ms=0
# Topics created on first use get 4 partitions.
auto.create.topics.enable=true
num.partitions=4
EOF
  write_if_changed "$KAFKA_DIR/log4j.properties" <<EOF || true
# Generated by scripts/services.sh. Kafka 3.9 logs through slf4j -> reload4j (log4j 1.x API).
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$KAFKA_LOG
log4j.appender.file.MaxFileSize=50MB
log4j.appender.file.MaxBackupIndex=3
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
# per-request and per-partition state chatter
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.controller=INFO
EOF
  write_if_changed "$KAFKA_DIR/tools-log4j.properties" <<EOF || true
# Generated by scripts/services.sh: for the Kafka CLI tools (warnings to stderr only).
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
  if ((changed)) && kafka_running; then
    log "NOTE: $KAFKA_DIR/server.properties changed; run 'stop' then 'start' to apply it"
  fi
}

# run a Kafka CLI class: kafka_tool CLASS ARGS...
kafka_tool() {
  "$JAVA" -Xmx256M -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$KAFKA_DIR/tools-log4j.properties" \
    -cp "$KAFKA_LIBS/*" "$@"
}

# our broker is running: pid file points to a live java process running kafka.Kafka
kafka_running() {
  [[ -f $KAFKA_PID ]] || return 1
  local pid
  pid="$(cat "$KAFKA_PID")"
  # /proc rather than kill -0, so that `status` also works for a non-root user; the command line
  # check guards against a recycled pid after a reboot
  [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka'
}

kafka_launch() {
  KAFKA_STARTED=0
  if kafka_running; then
    return 0
  fi
  rm -f "$KAFKA_PID"
  if port_open "$HOST" "$KAFKA_PORT" || port_open "$HOST" "$KAFKA_CONTROLLER_PORT"; then
    die "port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT is in use by a process this script did not start:
$(show_listeners "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT")"
  fi
  # KRaft needs its storage formatted once with a cluster id (meta.properties records it).
  if [[ ! -f $KAFKA_DIR/data/meta.properties ]]; then
    local cluster_id
    cluster_id="$(kafka_tool kafka.tools.StorageTool random-uuid 2>>"$LOGDIR/kafka-format.log")" ||
      die_with_log "StorageTool random-uuid failed" "$LOGDIR/kafka-format.log"
    log "formatting Kafka storage (cluster id $cluster_id)"
    kafka_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_DIR/server.properties" \
      >>"$LOGDIR/kafka-format.log" 2>&1 || die_with_log "kafka storage format failed" "$LOGDIR/kafka-format.log"
  fi
  log "starting Kafka"
  # setsid + nohup: own session, survives the shell that started it; stdio to a file and fd 9
  # (our lock) closed so that callers piping our output do not hang on the daemon.
  # shellcheck disable=SC2086
  setsid nohup "$JAVA" ${KAFKA_HEAP_OPTS:--Xmx1G -Xms512M} \
    -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" -Dkafka.logs.dir="$KAFKA_DIR/logs" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties" \
    </dev/null >>"$KAFKA_OUT" 2>&1 9>&- &
  echo $! >"$KAFKA_PID"
  KAFKA_STARTED=1
}

kafka_wait() {
  if ((KAFKA_STARTED)); then
    # alive and listening ... (alive by kill -0 on the pid we launched, not kafka_running: while
    # setsid and nohup exec into java, /proc/PID/cmdline can read empty for a moment, which was
    # once taken for an exit during a restart)
    local deadline=$((SECONDS + TIMEOUT)) pid
    pid="$(cat "$KAFKA_PID")"
    until port_open "$HOST" "$KAFKA_PORT"; do
      kill -0 "$pid" 2>/dev/null || die_with_log "Kafka exited during startup" "$KAFKA_OUT" "$KAFKA_LOG"
      ((SECONDS < deadline)) || die_with_log "Kafka: port $KAFKA_PORT not open after ${TIMEOUT}s" "$KAFKA_OUT" "$KAFKA_LOG"
      sleep 0.5
    done
    # ... then a real metadata round trip through the admin API (broker registered and unfenced
    # with the controller), so the first produce finds metadata.
    wait_for "Kafka metadata on $HOST:$KAFKA_PORT" "$KAFKA_OUT" "$KAFKA_LOG" -- \
      kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$HOST:$KAFKA_PORT" --list
  else
    # already running from an earlier call: a port check is enough (keeps a second run fast)
    wait_for "Kafka on $HOST:$KAFKA_PORT" "$KAFKA_LOG" -- port_open "$HOST" "$KAFKA_PORT"
  fi
}

stop_kafka() {
  if ! kafka_running; then
    rm -f "$KAFKA_PID"
    return 0
  fi
  local pid
  pid="$(cat "$KAFKA_PID")"
  log "stopping Kafka (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  # controlled shutdown normally takes a few seconds; kill it if it hangs
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "Kafka did not stop in 60 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.5
  done
  rm -f "$KAFKA_PID"
}

# ---------------------------------------------------------------------------------------------
# Schema Registry (Apicurio Registry's jars from Maven Central, built into a runnable jar once)
# ---------------------------------------------------------------------------------------------
registry_build() {
  # Rebuild only when the pom changed (stamp = pom checksum).
  local stamp="$REGISTRY_DIR/.pom.sha256" want
  want="$(sha256sum "$REGISTRY_POM" | cut -d' ' -f1)"
  if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]] && compgen -G "$REGISTRY_DIR/target/*-runner.jar" >/dev/null; then
    return 0
  fi
  export JAVA_HOME="${JAVA_HOME:-$(dirname "$(dirname "$(readlink -f "$JAVA")")")}"
  log "building the Schema Registry with Maven into $REGISTRY_DIR (first run only)"
  rm -rf "$REGISTRY_DIR"
  mkdir -p "$REGISTRY_DIR"
  cp "$REGISTRY_POM" "$REGISTRY_DIR/pom.xml"
  mvn -B -q -f "$REGISTRY_DIR/pom.xml" package -DskipTests >"$LOGDIR/mvn-schema-registry.log" 2>&1 ||
    die_with_log "mvn could not build the Schema Registry" "$LOGDIR/mvn-schema-registry.log"
  echo "$want" >"$stamp"
}

registry_running() {
  [[ -f $REGISTRY_PID ]] || return 1
  local pid
  pid="$(cat "$REGISTRY_PID")"
  [[ $pid =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'schema-registry-1-runner\.jar'
}

registry_ready() {
  curl -fsS -o /dev/null "http://$HOST:$REGISTRY_PORT/apis/ccompat/v7/subjects" 2>/dev/null
}

registry_launch() {
  REGISTRY_STARTED=0
  if registry_running; then
    return 0
  fi
  rm -f "$REGISTRY_PID"
  if port_open "$HOST" "$REGISTRY_PORT"; then
    die "port $REGISTRY_PORT is in use by a process this script did not start:
$(show_listeners "$REGISTRY_PORT")"
  fi
  log "starting the Schema Registry"
  # In-memory H2 storage, no authentication: a local stand-in for a team's registry.
  setsid nohup "$JAVA" -Xmx256m -Dquarkus.http.host="$HOST" -Dquarkus.http.port="$REGISTRY_PORT" \
    -Dquarkus.log.console.level=WARN -jar "$(compgen -G "$REGISTRY_DIR/target/*-runner.jar" | head -n1)" \
    </dev/null >>"$REGISTRY_LOG" 2>&1 9>&- &
  echo $! >"$REGISTRY_PID"
  REGISTRY_STARTED=1
}

registry_wait() {
  local deadline=$((SECONDS + TIMEOUT))
  until registry_ready; do
    # kill -0 on the launched pid, for the reason given in kafka_wait
    if ((REGISTRY_STARTED)) && ! kill -0 "$(cat "$REGISTRY_PID")" 2>/dev/null; then
      die_with_log "the Schema Registry exited during startup" "$REGISTRY_LOG"
    fi
    ((SECONDS < deadline)) || die_with_log "Schema Registry: not ready after ${TIMEOUT}s" "$REGISTRY_LOG"
    sleep 0.5
  done
}

stop_registry() {
  if ! registry_running; then
    rm -f "$REGISTRY_PID"
    return 0
  fi
  local pid
  pid="$(cat "$REGISTRY_PID")"
  log "stopping the Schema Registry (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 30))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.5
  done
  rm -f "$REGISTRY_PID"
}

# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------
print_endpoints() {
  cat <<EOF
Services (127.0.0.1 only):
  PostgreSQL $PG_VER/$PG_CLUSTER  postgresql://$PG_USER:$PG_PASSWORD@$HOST:$PG_PORT/${PG_DATABASES[0]}  (also /${PG_DATABASES[1]})
  RabbitMQ        amqp://$RABBIT_USER:$RABBIT_PASSWORD@$HOST:$RABBIT_PORT/$RABBIT_VHOST  (amqps on $RABBIT_TLS_PORT)
  TLS             servers' certificates signed by the local CA $TLS_DIR/ca.pem
  Kafka           $HOST:$KAFKA_PORT  (KRaft controller $HOST:$KAFKA_CONTROLLER_PORT; logs $KAFKA_DIR/logs)
                  $HOST:$KAFKA_SASL_SSL_PORT SASL_SSL, SCRAM user $KAFKA_SCRAM_USER / $KAFKA_SCRAM_PASSWORD
  Schema Registry http://$HOST:$REGISTRY_PORT/apis/ccompat/v7  (in-memory; log $REGISTRY_LOG)
Listening sockets:
$(show_listeners "$PG_PORT" "$RABBIT_PORT" "$RABBIT_TLS_PORT" "$RABBIT_DIST_PORT" "$EPMD_PORT" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_SSL_PORT" "$REGISTRY_PORT")
EOF
}

cmd_start() {
  need_root
  ensure_packages
  find_java || die "no Java 17+ runtime"
  kafka_fetch_libs
  registry_build
  kafka_write_config
  start_postgres
  # The JVMs (Kafka, the Schema Registry) boot in the background while RabbitMQ starts.
  kafka_launch
  registry_launch
  start_rabbitmq
  kafka_wait
  kafka_scram_users
  registry_wait
  local bad
  if bad="$(public_listeners "$PG_PORT" "$RABBIT_PORT" "$RABBIT_TLS_PORT" "$RABBIT_DIST_PORT" "$EPMD_PORT" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_SSL_PORT" "$REGISTRY_PORT")"; then
    log "WARNING: listening beyond loopback: $bad"
  fi
  print_endpoints
}

cmd_stop() {
  need_root
  stop_registry
  stop_kafka
  stop_rabbitmq
  stop_postgres
  log "stopped"
}

# Faults for drills and the chaos tests: the broker killed without warning and started again,
# RabbitMQ's application stopped for a while (the node and its port stay, as in a partition).
cmd_crash() {
  need_root
  [[ ${1:-} == kafka ]] || die "crash which service? kafka"
  find_java || die "no Java 17+ runtime"
  if kafka_running; then
    local pid
    pid="$(cat "$KAFKA_PID")"
    log "killing Kafka (pid $pid) with SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    # An exiting process loses its command line before its sockets: wait for both to go.
    while kill -0 "$pid" 2>/dev/null || port_open "$HOST" "$KAFKA_PORT" ||
      port_open "$HOST" "$KAFKA_CONTROLLER_PORT"; do
      sleep 0.1
    done
  fi
  kafka_write_config
  kafka_launch
  kafka_wait
  log "Kafka crashed and started again"
}

cmd_pause() {
  need_root
  [[ ${1:-} == rabbitmq && ${2:-} =~ ^[0-9]+$ ]] || die "usage: pause rabbitmq SECONDS"
  rabbit_env
  log "stopping the RabbitMQ application for ${2} s"
  rmqctl stop_app >/dev/null
  sleep "$2"
  rmqctl start_app >/dev/null
  wait_for "RabbitMQ on $HOST:$RABBIT_PORT" "$RABBIT_LOG" -- port_open "$HOST" "$RABBIT_PORT"
  log "RabbitMQ application started again"
}

# Restart one service in place (data kept): what an operator, a crash or an upgrade does to it.
cmd_restart() {
  need_root
  case "${1:-}" in
    postgres) stop_postgres; start_postgres ;;
    rabbitmq) stop_rabbitmq; start_rabbitmq ;;
    kafka)
      find_java || die "no Java 17+ runtime"
      kafka_write_config
      stop_kafka
      kafka_launch
      kafka_wait
      kafka_scram_users
      ;;
    schema-registry)
      find_java || die "no Java 17+ runtime"
      registry_build
      stop_registry
      registry_launch
      registry_wait
      ;;
    *) die "restart which service? postgres, rabbitmq, kafka or schema-registry" ;;
  esac
  log "restarted ${1}"
}

cmd_status() {
  local rc=0
  PG_VER=? PG_CLUSTER=?
  if command -v pg_lsclusters >/dev/null && pg_select_cluster_quiet && [[ "$(pg_status)" == online* ]] &&
     pg_isready -q -h "$HOST" -p "$PG_PORT"; then
    echo "postgresql: up    $PG_VER/$PG_CLUSTER on $HOST:$PG_PORT"
  else
    echo "postgresql: DOWN"; rc=1
  fi
  if [[ -x /usr/sbin/rabbitmq-server ]] && port_open "$HOST" "$RABBIT_PORT"; then
    echo "rabbitmq:   up    on $HOST:$RABBIT_PORT"
  else
    echo "rabbitmq:   DOWN"; rc=1
  fi
  if kafka_running && port_open "$HOST" "$KAFKA_PORT"; then
    echo "kafka:      up    pid $(cat "$KAFKA_PID") on $HOST:$KAFKA_PORT"
  else
    echo "kafka:      DOWN"; rc=1
  fi
  if registry_running && registry_ready; then
    echo "schema-registry: up  pid $(cat "$REGISTRY_PID") on $HOST:$REGISTRY_PORT"
  else
    echo "schema-registry: DOWN"; rc=1
  fi
  echo "listening sockets:"
  show_listeners "$PG_PORT" "$RABBIT_PORT" "$RABBIT_TLS_PORT" "$RABBIT_DIST_PORT" "$EPMD_PORT" "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$REGISTRY_PORT"
  return "$rc"
}

main() {
  local cmd="${1:-start}"
  case "$cmd" in
    start | stop | restart | crash | pause)
      mkdir -p "$LOGDIR"
      # one start/stop at a time (two CI steps or a developer racing CI would fight over the same daemons)
      exec 9>"$VAR/services.lock"
      flock -w 600 9 || die "another scripts/services.sh holds $VAR/services.lock"
      "cmd_$cmd" "${@:2}"
      ;;
    status) cmd_status ;;
    -h | --help | help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' ;;
    *) die "unknown command '$cmd' (use start, stop, restart SERVICE, crash kafka, pause rabbitmq SECONDS or status)" ;;
  esac
}

main "$@"
