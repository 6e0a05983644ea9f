#!/usr/bin/env bash
# shellcheck shell=bash
# tests/natlab/lab.sh - the Punch NAT lab: network namespaces, NAT routers (nftables), owned processes.
#
# Topology (created per run; namespace names "$NATLAB_PREFIX-<role>", default prefix "pn<pid>"):
#
#   ha 192.168.1.10 --- ra [NAT] 203.0.113.2 --+                +-- 198.51.100.2 [NAT] rb --- hb 192.168.1.10
#         (eth0)   (lan0) 192.168.1.1   (wan0)  \              /  (wan0)   192.168.1.1 (lan0)      (eth0)
#                                      203.0.113.1 [  wan  ] 198.51.100.1
#                                       (toa)      192.0.2.1/32 on lo   (tob)      <- the Punch server
#
# Both LANs use the same subnet on purpose (two home networks). Router flavours (lab_router):
#   NAT  preserve  masquerade                                   (keeps the source port when free)
#        eim       udp: snat to PUB:20000-29999, rest: snat     (port rewritten, one mapping per ip:port)
#        random    masquerade fully-random                      (new port per destination: symmetric)
#   FW   drop      input+forward policy drop, ct established,related accept, lan->wan accept
#        noudp     as drop, and no UDP from lan to wan at all (a hotel or corporate network)
#        tcp443    as drop, and nothing from lan to wan but TCP port 443 (the strictest networks)
#        stunonly  as drop, and of UDP from lan to wan only to ports 3478-3479 (STUN answers, nothing
#                  else of UDP gets through)
#        noudp-loss1  as noudp, and 1 % of the TCP segments through the router dropped at random
#                  (both ways: a lossy tunnelled leg; nftables numgen, no sch_netem needed)
#        accept    no filter table
#
# As a library (run.sh, scripts/relay-bench.sh):
#   . tests/natlab/lab.sh
#   lab_supervise "$@"            # the script re-runs itself as a worker under a small supervisor
#   lab_init                      # checks (exit 2 on a setup problem), traps EXIT/INT/TERM/HUP
#   lab_up                        # namespaces, links, addresses, routes
#   lab_router a preserve drop    # lab_router a|b NAT FW
#   lab_spawn NAME ROLE CMD...    # background process in a namespace, log $LAB_LOGDIR/NAME.log
#   lab_stop_all int; lab_down    # stop processes, delete namespaces (lab_cleanup does both)
# As a program:
#   tests/natlab/lab.sh check                 # only the preconditions
#   tests/natlab/lab.sh selftest              # topology + every NAT/firewall flavour, without Punch
#   tests/natlab/lab.sh up [NAT_A NAT_B FW]   # bring the lab up and keep it until Ctrl-C
#
# Env: NATLAB_PREFIX (namespace prefix, default pn$$), NATLAB_OUT (log directory, default a new
# /tmp/natlab.XXXXXX), NATLAB_PROC_LIMIT (hard lifetime of every spawned process in s, default 300).
#
# Guarantees: every namespace is created by this run (it refuses to start if one with its prefix
# exists) and only those are deleted; only processes spawned here (and whatever runs inside this
# run's namespaces) are signalled; cleanup runs on EXIT, INT, TERM and HUP, and the supervisor
# (lab_supervise) finishes it if the worker cannot (SIGKILLed, or a lost trap). veth pairs are
# created directly inside their namespaces ("ip link add NAME netns NS type veth peer name NAME2
# netns NS2"): no interface of this lab ever exists in the root namespace, so parallel runs cannot
# collide there and nothing can be left behind in it. Spawned processes also run under "timeout"
# (NATLAB_PROC_LIMIT), a last resort should even the supervisor be SIGKILLed (then the namespaces
# stay: ip netns del PREFIX-wan etc.).

[ -n "${LAB_SH_LOADED:-}" ] && return 0 2>/dev/null
LAB_SH_LOADED=1

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_REPO=$(cd "$LAB_DIR/../.." && pwd)
LAB_PFX=${NATLAB_PREFIX:-pn$$}
LAB_ROLES=(wan ra ha rb hb)
LAB_PUB_A=203.0.113.2
LAB_PUB_B=198.51.100.2
LAB_SERVER_IP=192.0.2.1
LAB_HOST_IP=192.168.1.10
LAB_PROC_LIMIT=${NATLAB_PROC_LIMIT:-300}
LAB_LOGDIR=""
LAB_TMP=""
LAB_CREATED_NS=()
declare -A LAB_PID=()     # name -> pid of the spawned process (session + group leader: "timeout")
declare -A LAB_PPID=()    # pid  -> the shell that spawned it (ownership check before every signal)
declare -A LAB_LOG=()     # name -> log file
LAB_T0=${EPOCHREALTIME//[.,]/}
export GST_DEBUG_NO_COLOR=1 NO_COLOR=1   # plain text logs (GStreamer debug, tracing in punch serve)
# python3 for JSON and small helpers; the system one when present (a pyenv shim costs ~0.1 s per call)
LAB_PY=python3
[ -x /usr/bin/python3 ] && LAB_PY=/usr/bin/python3

# ---------------------------------------------------------------- small helpers
lab_since() { local t=${EPOCHREALTIME//[.,]/}; awk -v a="$t" -v b="$1" 'BEGIN { printf "%.2f", (a - b) / 1e6 }'; }  # s since a ${EPOCHREALTIME//[.,]/} stamp
lab_stamp() { echo "${EPOCHREALTIME//[.,]/}"; }
# lab_sleep SECONDS: sleep in 0.2 s steps; bash runs a trap only after the foreground command ends,
# so a long "sleep" would hold off INT/TERM handling for its whole length
lab_sleep() {
  local end=$((${EPOCHREALTIME//[.,]/} + ${1%.*} * 1000000))
  while [ "${EPOCHREALTIME//[.,]/}" -lt "$end" ]; do sleep 0.2; done
}
lab_log() { printf '[natlab %s +%6ss] %s\n' "$LAB_PFX" "$(lab_since "$LAB_T0")" "$*" >&2; }
lab_die() { printf 'natlab: SETUP PROBLEM: %s\n' "$*" >&2; exit 2; }
lab_ns() { printf '%s-%s' "$LAB_PFX" "$1"; }                                  # role -> namespace name
lab_x() { local ns; ns=$(lab_ns "$1"); shift; ip netns exec "$ns" "$@"; }     # run in a role's namespace
lab_router_ns() { case $1 in a) echo ra ;; b) echo rb ;; *) lab_die "router must be a or b, got '$1'" ;; esac; }

# lab_json PATH < JSON: value at a dotted path ("stream_tokens.default.sender", "streams.0.path");
# strings raw, anything else as JSON; exit 1 when absent or not JSON.
lab_json() {
  "$LAB_PY" -c '
import json, sys
try:
    v = json.load(sys.stdin)
    for k in sys.argv[1].split(".") if sys.argv[1] else []:
        v = v[int(k)] if isinstance(v, list) else v[k]
except Exception:
    sys.exit(1)
print(v if isinstance(v, str) else json.dumps(v))' "$1"
}

# print the last N lines of a spawned process's log (or of a file) to stderr, framed
lab_tail() { # NAME|FILE [N]
  local f=${LAB_LOG[$1]:-$1} n=${2:-25}
  [ -f "$f" ] || { printf -- '--- %s: no log\n' "$1" >&2; return 0; }
  printf -- '--- last %s lines of %s\n' "$n" "$f" >&2
  tail -n "$n" "$f" >&2
  printf -- '--- end of %s\n' "$f" >&2
}

# ---------------------------------------------------------------- preconditions
lab_need_tools() { # TOOL... (exit 2 naming the Debian package of the first missing one)
  local t pkg
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 && continue
    case $t in
      ip) pkg=iproute2 ;; nft) pkg=nftables ;; conntrack) pkg=conntrack ;; curl) pkg=curl ;;
      python3) pkg=python3 ;; gst-launch-1.0 | gst-inspect-1.0) pkg=gstreamer1.0-tools ;;
      ffprobe) pkg=ffmpeg ;; srt-live-transmit) pkg=srt-tools ;; timeout | setsid | stdbuf) pkg=coreutils ;; getconf) pkg=libc-bin ;;
      awk) pkg=gawk ;; pgrep | ps) pkg=procps ;; *) pkg="(the package providing $t)" ;;
    esac
    [ "$t" = setsid ] && pkg=util-linux
    lab_die "'$t' is missing: apt-get install $pkg"
  done
}
lab_need_gst() { # ELEMENT... (exit 2 naming the Debian package)
  local e pkg
  for e in "$@"; do
    # not --exists: that also demands plugin version >= the GStreamer version (punch is 0.x)
    gst-inspect-1.0 "$e" >/dev/null 2>&1 && continue
    case $e in
      srtsrc | srtsink | mpegtsmux | h264parse | openh264enc | openh264dec | tsdemux) pkg=gstreamer1.0-plugins-bad ;;
      videotestsrc | audiotestsrc) pkg=gstreamer1.0-plugins-base ;;
      punchsink | punchsrc) lab_die "GStreamer element '$e' not found: GST_PLUGIN_PATH (now '${GST_PLUGIN_PATH:-}') must name the directory holding libgstpunch.so (cargo build -p gst-plugin-punch)" ;;
      *) pkg=gstreamer1.0-tools ;;
    esac
    lab_die "GStreamer element '$e' not found: apt-get install $pkg"
  done
}
lab_check_prefix() {
  [[ $LAB_PFX =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,39}$ ]] ||
    lab_die "NATLAB_PREFIX '$LAB_PFX' must be 1-40 characters of [A-Za-z0-9_.-]"
  local n
  for n in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    [[ $n == "$LAB_PFX"-* ]] &&
      lab_die "namespace '$n' already exists (prefix '$LAB_PFX'): another run uses this prefix, or a killed one left it (then: ip netns del $n). Refusing to touch it."
  done
  return 0
}
lab_init() {
  [ "$(id -u)" = 0 ] || lab_die "must run as root (network namespaces, nftables)"
  lab_need_tools ip nft conntrack curl python3 timeout setsid stdbuf awk ps
  nft --version >/dev/null 2>&1 || lab_die "nft does not work: apt-get install nftables"
  lab_check_prefix
  if [ -n "${NATLAB_OUT:-}" ]; then
    mkdir -p "$NATLAB_OUT" || lab_die "cannot create NATLAB_OUT=$NATLAB_OUT"
    LAB_LOGDIR=$(cd "$NATLAB_OUT" && pwd)
  else
    LAB_LOGDIR=$(mktemp -d /tmp/natlab.XXXXXX) || lab_die "mktemp failed"
  fi
  LAB_TMP=$(mktemp -d "/tmp/natlab-$LAB_PFX.XXXXXX") || lab_die "mktemp failed"
  lab__state tmp "$LAB_TMP" add
  trap lab__on_exit EXIT
  trap 'lab__on_signal INT 130' INT
  trap 'lab__on_signal TERM 143' TERM
  trap 'lab__on_signal HUP 129' HUP
}
# A signal that arrives inside a critical section (between creating a namespace or process and
# recording it) is held until the section ends, so that cleanup knows about everything created.
LAB_CRIT="" LAB_HELD_SIG=""
lab__on_signal() {
  if [ -n "$LAB_CRIT" ]; then LAB_HELD_SIG="$1 $2"; return 0; fi
  printf 'natlab: SIG%s: cleaning up %s-*\n' "$1" "$LAB_PFX" >&2
  exit "$2"
}
lab__crit_begin() { LAB_CRIT=1; }
lab__crit_end() {
  LAB_CRIT=""
  if [ -n "$LAB_HELD_SIG" ]; then
    # shellcheck disable=SC2086
    lab__on_signal $LAB_HELD_SIG
  fi
}
lab__on_exit() {
  local rc=$?
  trap '' INT TERM HUP          # a second Ctrl-C must not abort the cleanup
  lab_cleanup
  [ -n "$LAB_TMP" ] && rm -rf -- "$LAB_TMP"
  # a log directory made up here and left empty (check, selftest) is not worth keeping
  [ -z "${NATLAB_OUT:-}" ] && [ -n "$LAB_LOGDIR" ] && rmdir -- "$LAB_LOGDIR" 2>/dev/null
  exit "$rc"
}

# ---------------------------------------------------------------- topology
lab__mkns() {
  local ns ok=""; ns=$(lab_ns "$1")
  lab__crit_begin
  ip netns add "$ns" && { LAB_CREATED_NS+=("$ns"); lab__state ns "$ns" add; ok=1; }
  lab__crit_end
  [ -n "$ok" ] || lab_die "cannot create namespace $ns"
  ip -n "$ns" link set lo up || lab_die "lo up in $ns"
}
lab__link() { # ROLE1 IF1 ROLE2 IF2: a veth pair created directly inside both namespaces
  local n1 n2; n1=$(lab_ns "$1"); n2=$(lab_ns "$3")
  ip link add "$2" netns "$n1" type veth peer name "$4" netns "$n2" || lab_die "veth $1:$2 <-> $3:$4"
  if ! ip -n "$n1" link set "$2" up || ! ip -n "$n2" link set "$4" up; then lab_die "link up $1:$2 / $3:$4"; fi
}
lab_up() {
  local t0 r h; t0=$(lab_stamp)
  lab_check_prefix
  for r in "${LAB_ROLES[@]}"; do lab__mkns "$r"; done
  lab__link wan toa ra wan0
  lab__link wan tob rb wan0
  lab__link ra lan0 ha eth0
  lab__link rb lan0 hb eth0
  {
    ip -n "$(lab_ns wan)" addr add 203.0.113.1/24 dev toa &&
      ip -n "$(lab_ns wan)" addr add 198.51.100.1/24 dev tob &&
      ip -n "$(lab_ns wan)" addr add "$LAB_SERVER_IP/32" dev lo &&
      lab_x wan sysctl -qw net.ipv4.ip_forward=1 &&
      ip -n "$(lab_ns ra)" addr add "$LAB_PUB_A/24" dev wan0 &&
      ip -n "$(lab_ns ra)" route add default via 203.0.113.1 &&
      ip -n "$(lab_ns rb)" addr add "$LAB_PUB_B/24" dev wan0 &&
      ip -n "$(lab_ns rb)" route add default via 198.51.100.1
  } || lab_die "addressing of wan/ra/rb failed"
  for r in ra rb; do
    if ! ip -n "$(lab_ns "$r")" addr add 192.168.1.1/24 dev lan0 || ! lab_x "$r" sysctl -qw net.ipv4.ip_forward=1; then
      lab_die "addressing of $r failed"
    fi
  done
  for h in ha hb; do
    if ! ip -n "$(lab_ns "$h")" addr add "$LAB_HOST_IP/24" dev eth0 || ! ip -n "$(lab_ns "$h")" route add default via 192.168.1.1; then
      lab_die "addressing of $h failed"
    fi
  done
  lab_log "topology up ($(lab_ns '{wan,ra,ha,rb,hb}')) in $(lab_since "$t0")s"
}

# lab_router a|b preserve|eim|random drop|noudp|accept [keep]: replace the router's whole ruleset,
# flush conntrack (keep: not, so connections through it go on, as when a network changes its
# firewall mid-stream)
lab_router() {
  local rn ns pub nat fw natrule keep=${4:-}
  rn=$(lab_router_ns "$1"); ns=$(lab_ns "$rn"); nat=$2; fw=$3
  [ "$1" = a ] && pub=$LAB_PUB_A || pub=$LAB_PUB_B
  case $nat in
    preserve) natrule='oifname "wan0" masquerade' ;;
    random) natrule='oifname "wan0" masquerade fully-random' ;;
    eim) natrule="oifname \"wan0\" meta l4proto udp snat to $pub:20000-29999
    oifname \"wan0\" snat to $pub" ;;
    *) lab_die "NAT flavour must be preserve, eim or random, got '$nat'" ;;
  esac
  case $fw in drop | noudp | noudp-loss1 | tcp443 | stunonly | accept) ;; *) lab_die "firewall must be drop, noudp, noudp-loss1, tcp443, stunonly or accept, got '$fw'" ;; esac
  {
    printf 'flush ruleset\n'
    printf 'table ip nat {\n  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n    %s\n  }\n}\n' "$natrule"
    if [ "$fw" != accept ]; then
      local udp=""
      [ "$fw" = noudp ] && udp='iifname "lan0" oifname "wan0" meta l4proto udp counter drop'
      [ "$fw" = tcp443 ] && udp='iifname "lan0" oifname "wan0" tcp dport 443 accept
    iifname "lan0" oifname "wan0" counter drop'
      [ "$fw" = stunonly ] && udp='iifname "lan0" oifname "wan0" udp dport 3478-3479 accept
    iifname "lan0" oifname "wan0" meta l4proto udp counter drop'
      [ "$fw" = noudp-loss1 ] && udp='iifname "lan0" oifname "wan0" meta l4proto udp counter drop
    meta l4proto tcp numgen random mod 100 < 1 counter drop'
      cat <<EOF
table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iifname "lo" accept
    meta l4proto icmp accept
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    $udp
    ct state established,related accept
    iifname "lan0" oifname "wan0" accept
  }
}
EOF
    fi
  } | ip netns exec "$ns" nft -f - || lab_die "nftables configuration of $ns ($nat/$fw) failed"
  [ "$keep" = keep ] || ip netns exec "$ns" conntrack -F >/dev/null 2>&1
  lab_log "router $rn: NAT $nat, firewall $fw${keep:+ (conntrack kept)}"
}

# conntrack evidence of both routers
lab_conntrack() { # LABEL
  local r
  for r in ra rb; do
    printf -- '--- %s: conntrack -L -p udp in %s\n' "$1" "$(lab_ns "$r")"
    lab_x "$r" conntrack -L -p udp 2>&1
  done
}

# ---------------------------------------------------------------- owned processes
# lab_spawn NAME ROLE CMD...: run CMD in ROLE's namespace in the background, in its own session
# (setsid, so its process group can be signalled), under timeout NATLAB_PROC_LIMIT; stdout+stderr
# to $LAB_LOGDIR/NAME.log. Must be called from the main shell (not inside $(...)).
lab_spawn() {
  local name=$1 role=$2 ns log pid; shift 2
  ns=$(lab_ns "$role"); log="$LAB_LOGDIR/$name.log"
  [ -z "${LAB_PID[$name]:-}" ] || lab_die "process name '$name' already in use"
  lab__crit_begin
  setsid timeout -k 2 "$LAB_PROC_LIMIT" ip netns exec "$ns" "$@" >"$log" 2>&1 </dev/null &
  pid=$!
  LAB_PID[$name]=$pid LAB_PPID[$pid]=$BASHPID LAB_LOG[$name]=$log
  lab__state pg "$pid" add
  lab__crit_end
  lab_log "started $name in $ns (pid $pid): $*"
}
# true while the spawned process is alive and still the child of the shell that spawned it
lab__owned() { # PID
  local pid=$1 st
  [ -n "${LAB_PPID[$pid]:-}" ] || return 1
  { read -r st <"/proc/$pid/stat"; } 2>/dev/null || return 1
  st=${st##*) }
  # shellcheck disable=SC2086
  set -- $st
  [ "$1" != Z ] && [ "$2" = "${LAB_PPID[$pid]}" ]
}
lab_running() { local pid=${LAB_PID[$1]:-}; [ -n "$pid" ] && lab__owned "$pid"; }
# pid of the command itself (timeout's child), for /proc/<pid>/stat or a gentle SIGINT
lab_cmd_pid() { # NAME
  local pid=${LAB_PID[$1]:-} c i
  [ -n "$pid" ] || return 1
  for i in 1 2 3 4 5 6 7 8 9 10; do
    lab__owned "$pid" || return 1
    c=$(pgrep -P "$pid" | head -n1)
    [ -n "$c" ] && { echo "$c"; return 0; }
    sleep 0.05
  done
  return 1
}
# lab_stop [int] NAME...: stop spawned processes. With "int", first SIGINT to each command (gst-launch
# -e sends EOS, punch serve shuts down) and up to 3 s grace; then SIGTERM to each process group, up
# to 2 s, then SIGKILL. Reaps them and forgets them.  lab_stop_all [int]: the same for all of them.
# shellcheck disable=SC2120 # "int" is passed by the scripts that source this file
lab_stop_all() { local names=("${!LAB_PID[@]}"); [ ${#names[@]} -gt 0 ] || return 0; lab_stop "$@" "${names[@]}"; }
lab_stop() {
  local gentle="" names=() n pid c i alive sig
  [ "${1:-}" = int ] && { gentle=1; shift; }
  names=("$@")
  [ ${#names[@]} -gt 0 ] || return 0
  if [ -n "$gentle" ]; then
    for n in "${names[@]}"; do
      pid=${LAB_PID[$n]:-}
      [ -n "$pid" ] && lab__owned "$pid" && c=$(pgrep -P "$pid" | head -n1) && [ -n "$c" ] && kill -INT "$c" 2>/dev/null
    done
    for i in $(seq 30); do
      alive=0
      for n in "${names[@]}"; do pid=${LAB_PID[$n]:-}; [ -n "$pid" ] && lab__owned "$pid" && alive=1; done
      [ $alive = 0 ] && break
      sleep 0.1
    done
  fi
  for sig in TERM KILL; do
    alive=0
    for n in "${names[@]}"; do
      pid=${LAB_PID[$n]:-}
      [ -n "$pid" ] && lab__owned "$pid" && { kill -"$sig" -- "-$pid" 2>/dev/null; alive=1; }
    done
    [ $alive = 0 ] && break
    [ $sig = KILL ] && break
    for i in $(seq 20); do
      alive=0
      for n in "${names[@]}"; do pid=${LAB_PID[$n]:-}; [ -n "$pid" ] && lab__owned "$pid" && alive=1; done
      [ $alive = 0 ] && break
      sleep 0.1
    done
    [ $alive = 0 ] && break
  done
  for n in "${names[@]}"; do
    pid=${LAB_PID[$n]:-}
    [ -n "$pid" ] || continue
    wait "$pid" 2>/dev/null
    unset 'LAB_PPID[$pid]' 'LAB_PID[$n]'
    lab__state pg "$pid" del
  done
  return 0
}
# lab_down: stop everything spawned, kill whatever still runs inside this run's namespaces (only
# processes of this run can be there), delete exactly the namespaces this run created.
lab_down() {
  local ns p pids=() i
  # shellcheck disable=SC2119
  lab_stop_all
  for ns in "${LAB_CREATED_NS[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do pids+=("$p"); done
  done
  if [ ${#pids[@]} -gt 0 ]; then
    for p in "${pids[@]}"; do
      printf 'natlab: ending leftover process %s (%s) inside this run'"'"'s namespaces\n' "$p" "$(ps -o args= -p "$p" 2>/dev/null | cut -c1-80)" >&2
    done
    kill -TERM "${pids[@]}" 2>/dev/null
    for i in $(seq 10); do
      pids=()
      for ns in "${LAB_CREATED_NS[@]}"; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do pids+=("$p"); done
      done
      [ ${#pids[@]} -eq 0 ] && break
      sleep 0.1
    done
    [ ${#pids[@]} -gt 0 ] && kill -KILL "${pids[@]}" 2>/dev/null
  fi
  for ns in "${LAB_CREATED_NS[@]}"; do
    if ip netns del "$ns" 2>/dev/null; then lab__state ns "$ns" del; else printf 'natlab: could not delete namespace %s\n' "$ns" >&2; fi
  done
  [ ${#LAB_CREATED_NS[@]} -gt 0 ] && lab_log "namespaces deleted: ${LAB_CREATED_NS[*]}"
  LAB_CREATED_NS=()
}
lab_cleanup() { lab_down; }

# ---------------------------------------------------------------- supervisor
# lab_supervise "$@" (first thing in a script that sources this file): the script re-runs itself as a
# worker child and this process only waits. The worker does everything and cleans up after itself
# (traps); it also logs each namespace and process group it creates or removes to $NATLAB_STATE. If
# the worker does not finish its cleanup (SIGKILLed, or a signal lost: bash 5.2 can drop a trap
# that fires while it is expanding a $(...), seen here about once in 60 interrupts), the supervisor
# ends what the state file still lists. On INT/TERM/HUP it forwards SIGTERM to the worker, waits
# up to 10 s, then SIGKILLs it. The supervisor's loop has no command substitution (see above).
lab__state() { [ -n "${NATLAB_STATE:-}" ] && echo "$*" >>"$NATLAB_STATE"; return 0; }
lab__child_alive() { # PID: alive, not a zombie, and a child of this shell
  local st
  { read -r st <"/proc/$1/stat"; } 2>/dev/null || return 1
  st=${st##*) }
  # shellcheck disable=SC2086
  set -- $st
  [ "$1" != Z ] && [ "$2" = "$$" ]
}
lab_supervise() {
  [ -n "${NATLAB_WORKER:-}" ] && return 0
  local state wpid rc=2 r sig="" t_sig=""
  state=$(mktemp /tmp/natlab-state.XXXXXX) || { echo "natlab: SETUP PROBLEM: mktemp failed" >&2; exit 2; }
  trap 'sig=${sig:-130}' INT
  trap 'sig=${sig:-143}' TERM
  trap 'sig=${sig:-129}' HUP
  NATLAB_WORKER=1 NATLAB_STATE=$state NATLAB_PREFIX=$LAB_PFX "$BASH" "$0" "$@" &
  wpid=$!
  while lab__child_alive "$wpid"; do
    if [ -z "$sig" ]; then
      wait "$wpid"          # returns early (> 128) when a trapped signal arrives
      rc=$?
    else
      if [ -z "$t_sig" ]; then
        t_sig=$SECONDS
        echo "natlab: signal $((sig - 128)) received, stopping the run (SIGTERM to its worker $wpid)" >&2
        kill -TERM "$wpid" 2>/dev/null
      elif [ $((SECONDS - t_sig)) -ge 10 ]; then
        echo "natlab: the worker did not stop within 10 s of SIGTERM; killing it" >&2
        kill -KILL "$wpid" 2>/dev/null
      fi
      sleep 0.2
    fi
  done
  wait "$wpid" 2>/dev/null
  r=$?
  [ "$r" != 127 ] && rc=$r   # 127: already collected by the wait in the loop
  trap '' INT TERM HUP
  lab__sweep_state "$state"
  rm -f -- "$state"
  [ -n "$sig" ] && rc=$sig
  exit "$rc"
}
# what the worker created and did not remove: process groups still running its commands, then the
# processes inside and the namespaces themselves (never anything the state file does not list)
lab__sweep_state() { # STATE_FILE
  local kind id what ns p cmd pids
  local -A nss=() pgs=()
  while read -r kind id what; do
    case $kind:$what in
      ns:add) nss[$id]=1 ;; ns:del) unset "nss[$id]" ;;
      pg:add) pgs[$id]=1 ;; pg:del) unset "pgs[$id]" ;;
      tmp:add) [[ $id == /tmp/natlab-"$LAB_PFX".* ]] && rm -rf -- "$id" ;;   # the worker's scratch dir
    esac
  done <"$1"
  for p in "${!pgs[@]}"; do
    cmd=$( { tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null) || continue
    [[ $cmd == "timeout -k 2 "*" ip netns exec $LAB_PFX-"* ]] || continue   # a recycled pid is not ours
    echo "natlab: ending leftover process group $p ($(cut -c1-80 <<<"$cmd"))" >&2
    kill -KILL -- "-$p" 2>/dev/null
  done
  for ns in "${!nss[@]}"; do
    ip netns list | awk '{print $1}' | grep -qxF "$ns" || continue
    pids=$(ip netns pids "$ns" 2>/dev/null)
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    sleep 0.1
    ip netns del "$ns" 2>/dev/null && echo "natlab: removed leftover namespace $ns" >&2
  done
  return 0
}

# ---------------------------------------------------------------- Punch helpers (server in wan)
LAB_HTTP="http://$LAB_SERVER_IP:8787"
LAB_PUNCH="punch://$LAB_SERVER_IP:8787"
LAB_CA=""   # set by lab_tls: the CA the server's certificate is from
LAB_TLS_ARGS=()
# lab_tls: the server on built-in TLS at 443 (a CA and a certificate for its IP, made here with
# openssl); links https:// and punchs://, curl and the elements trust that CA
lab_tls() {
  local d=$LAB_TMP/tls
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -keyout "$d/ca.key" -out "$d/ca.pem" -subj /CN=natlab-ca \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout "$d/key.pem" -out "$d/req.csr" -subj "/CN=$LAB_SERVER_IP" 2>/dev/null &&
    printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$LAB_SERVER_IP" >"$d/ext" &&
    openssl x509 -req -in "$d/req.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
      -extfile "$d/ext" -out "$d/cert.pem" 2>/dev/null || lab_die "openssl could not make the lab's certificate"
  LAB_CA=$d/ca.pem
  LAB_HTTP="https://$LAB_SERVER_IP"
  LAB_PUNCH="punchs://$LAB_SERVER_IP"
  LAB_TLS_ARGS=(--tls-cert "$d/cert.pem" --tls-key "$d/key.pem")
}
# the port --listen takes
lab_listen_port() { [ -n "$LAB_CA" ] && echo 443 || echo 8787; }
# lab_punch_check: PUNCH_BIN and the plugin (defaults: this repository's target/debug)
lab_punch_check() {
  : "${PUNCH_BIN:=$LAB_REPO/target/debug/punch}"
  : "${GST_PLUGIN_PATH:=$LAB_REPO/target/debug}"
  export PUNCH_BIN GST_PLUGIN_PATH
  [ -x "$PUNCH_BIN" ] || lab_die "PUNCH_BIN=$PUNCH_BIN is not an executable (build it: cargo build --workspace)"
  [ -f "$GST_PLUGIN_PATH/libgstpunch.so" ] || [ -n "$(find "${GST_PLUGIN_PATH//:/ }" -maxdepth 1 -name libgstpunch.so 2>/dev/null)" ] ||
    lab_die "no libgstpunch.so in GST_PLUGIN_PATH=$GST_PLUGIN_PATH (build it: cargo build --workspace)"
  lab_need_tools gst-launch-1.0 gst-inspect-1.0
  lab_need_gst punchsink punchsrc srtsrc srtsink
}
# lab_http ROLE CURL-ARGS...: curl from a namespace, bounded
lab_http() { local role=$1; shift; lab_x "$role" curl -sS --max-time 3 ${LAB_CA:+--cacert "$LAB_CA"} "$@"; }
# lab_punch_serve NAME: start the server in wan and wait (bounded) until /healthz answers there
# and from both hosts (through their NATs). Extra flags: PUNCH_SERVE_ARGS (default below).
lab_punch_serve() {
  local name=$1 args i ok=""
  read -r -a args <<<"${PUNCH_SERVE_ARGS---stun-port 3478 --direct-timeout 6}"
  lab_spawn "$name" wan "$PUNCH_BIN" serve --listen "$LAB_SERVER_IP:$(lab_listen_port)" --db :memory: "${LAB_TLS_ARGS[@]}" "${args[@]}"
  for i in $(seq 50); do
    lab_running "$name" || { lab_tail "$name"; lab_die "punch serve exited at once (flags: ${args[*]}; PUNCH_SERVE_ARGS overrides them)"; }
    lab_http wan -f -o /dev/null "$LAB_HTTP/healthz" 2>/dev/null && { ok=1; break; }
    sleep 0.2
  done
  [ -n "$ok" ] || { lab_tail "$name"; lab_die "punch serve did not answer $LAB_HTTP/healthz within 10 s"; }
  for i in ha hb; do
    lab_http "$i" -f -o /dev/null "$LAB_HTTP/healthz" ||
      lab_die "the server is not reachable from $i through its router (check lab_router)"
  done
}
# lab_punch_session NAME [STREAM-SETTINGS]: create session NAME (its stream "default" with the
# given settings JSON, e.g. '{"sender":{"device":"caller"}}'); sets LAB_ADMIN, LAB_SENDER_URI,
# LAB_RECEIVER_URI
lab_punch_session() {
  local name=$1 settings=${2:-null} body s r
  body=$(lab_http wan -f -X POST "$LAB_HTTP/api/session" -H 'content-type: application/json' \
    -d "{\"name\":\"$name\",\"streams\":{\"default\":$settings}}") ||
    lab_die "POST /api/session failed"
  if ! LAB_ADMIN=$(lab_json token <<<"$body") || ! s=$(lab_json stream_tokens.default.sender <<<"$body") ||
    ! r=$(lab_json stream_tokens.default.receiver <<<"$body"); then
    lab_die "unexpected POST /api/session answer: $body"
  fi
  # shellcheck disable=SC2034 # both used by the scripts that source this file
  LAB_SENDER_URI="$LAB_PUNCH/$name/default?token=$s"
  # shellcheck disable=SC2034
  LAB_RECEIVER_URI="$LAB_PUNCH/$name/default?token=$r"
}
lab_punch_view() { lab_http wan -H "Authorization: Bearer $LAB_ADMIN" "$LAB_HTTP/api/session/$1"; }  # NAME -> JSON

# ---------------------------------------------------------------- program mode
lab__selftest() {
  cat >"$LAB_TMP/reflector.py" <<'EOF'
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in (3478, 3479):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], port))
    sel.register(s, selectors.EVENT_READ)
print("reflecting", flush=True)
while True:
    for key, _ in sel.select():
        data, addr = key.fileobj.recvfrom(2048)
        key.fileobj.sendto(("%s:%d" % addr).encode(), addr)
EOF
  cat >"$LAB_TMP/probe.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9000)); s.settimeout(0.5)
out = []
for port in (3478, 3479):
    for _ in range(4):
        s.sendto(b"probe", (sys.argv[1], port))
        try:
            out.append(s.recvfrom(256)[0].decode()); break
        except socket.timeout:
            pass
    else:
        out.append("none")
print(" ".join(out))
EOF
  local fails=0 nat fw h m p1 p2 n want
  # reflector/http logs are not worth keeping unless NATLAB_OUT asks for them
  if [ -z "${NATLAB_OUT:-}" ]; then rmdir -- "$LAB_LOGDIR" 2>/dev/null; LAB_LOGDIR=$LAB_TMP; fi
  lab_up
  lab_spawn reflector wan "$LAB_PY" -u "$LAB_TMP/reflector.py" "$LAB_SERVER_IP"
  lab_spawn http wan "$LAB_PY" -m http.server --bind "$LAB_SERVER_IP" 8787
  sleep 0.5
  for nat in preserve eim random; do
    lab_router a "$nat" drop; lab_router b "$nat" drop
    for h in ha hb; do
      m=$(lab_x "$h" "$LAB_PY" "$LAB_TMP/probe.py" "$LAB_SERVER_IP")
      p1=${m%% *}; p2=${m##* }; p1=${p1##*:}; p2=${p2##*:}
      want=FAIL
      case $nat in
        preserve) [ "$p1" = 9000 ] && [ "$p2" = 9000 ] && want=ok ;;
        eim) [ "$p1" = "$p2" ] && [ "$p1" -ge 20000 ] 2>/dev/null && [ "$p1" -le 29999 ] && want=ok ;;
        random) [ "$p1" != "$p2" ] && [ "$p1" != none ] && [ "$p2" != none ] && want=ok ;;
      esac
      [ $want = ok ] || fails=$((fails + 1))
      printf 'selftest %-8s %s: 9000 -> %-40s %s\n' "$nat" "$h" "$m" "$want"
    done
  done
  for h in ha hb; do
    if lab_http "$h" -f -o /dev/null "$LAB_HTTP/"; then want=ok; else want=FAIL; fails=$((fails + 1)); fi
    printf 'selftest tcp      %s -> %s through NAT+drop firewall: %s\n' "$h" "$LAB_HTTP" "$want"
  done
  for fw in drop accept; do
    lab_router a preserve "$fw"
    lab_x wan "$LAB_PY" -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("203.0.113.1", 9100)); s.sendto(b"x", ("203.0.113.2", 9100))'
    n=$(lab_x ra conntrack -L -p udp --dport 9100 2>/dev/null | grep -c 'dport=9100')
    # drop: the packet dies in the input chain before conntrack confirms it; accept: an UNREPLIED entry
    want=FAIL
    { [ "$fw" = drop ] && [ "$n" = 0 ]; } || { [ "$fw" = accept ] && [ "$n" = 1 ]; } && want=ok
    [ $want = ok ] || fails=$((fails + 1))
    printf 'selftest fw %-6s unsolicited UDP to ra: %s conntrack entries: %s\n' "$fw" "$n" "$want"
  done
  lab_down
  want=FAIL
  [ "$(ip netns list | awk '{print $1}' | grep -c "^$LAB_PFX-")" = 0 ] && want=ok
  [ $want = ok ] || fails=$((fails + 1))
  printf 'selftest cleanup: no %s-* namespace left: %s\n' "$LAB_PFX" "$want"
  [ $fails = 0 ]
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -uo pipefail
  lab_supervise "$@"
  case ${1:-} in
    check) lab_init; echo "natlab: preconditions ok (prefix $LAB_PFX)" ;;
    selftest) lab_init; lab__selftest; exit $? ;;
    up)
      lab_init; lab_up
      lab_router a "${2:-preserve}" "${4:-drop}"; lab_router b "${3:-preserve}" "${4:-drop}"
      echo "natlab: up; try: ip netns exec $(lab_ns ha) bash   (Ctrl-C deletes everything)"
      while :; do sleep 1; done ;;
    *) echo "usage: $0 check | selftest | up [NAT_A NAT_B FW]   (NAT: preserve|eim|random, FW: drop|accept)" >&2; exit 2 ;;
  esac
fi
