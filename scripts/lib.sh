# Shared shell helpers for scripts/*: source it, do not run it.

# snmpsim's --help exits 1; the responder starts (with every module it imports) if the usage it
# prints names its options.
snmpsim_starts() { local out; out=$(snmpsim-command-responder --help 2>&1) || true; [[ $out == *--data-dir* ]]; }

# A block of N free loopback ports of protocol t (TCP) or u (UDP), below the ephemeral range so
# that no outgoing connection can hold one of them: `port_block t 11` prints the first.
port_block() {
    local proto=$1 n=$2 used s
    used=$(ss -Hna"$proto" | awk '{print $4}' | sed 's/.*://' | sort -un)
    for _ in $(seq 1 100); do
        s=$((20000 + (RANDOM % 12000)))
        if ! awk -v a="$s" -v b="$((s + n))" '$1 >= a && $1 < b { f = 1 } END { exit !f }' <<<"$used"; then
            echo "$s"
            return 0
        fi
    done
    echo "${0##*/}: no block of $n free ports" >&2
    return 1
}

# Waits up to 10 s until something listens on TCP 127.0.0.1:PORT: `wait_listen PORT WHAT`.
wait_listen() {
    for _ in $(seq 1 100); do
        ss -Hltn "sport = :$1" | grep -q . && return 0
        sleep 0.1
    done
    echo "${0##*/}: $2 did not listen on 127.0.0.1:$1" >&2
    return 1
}

# Resident and peak memory of a process, in KiB: `rss_kb PID`, `hwm_kb PID` (empty if gone).
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }

# The fields of a /proc stat file from the third (state) on, the command name cut off (it may
# hold spaces and parentheses): `stat_fields FILE`; field N of the file is then $((N - 2)).
stat_fields() { sed 's/.*) //' "$1"; }

# CPU time of a process so far, utime + stime in clock ticks (`getconf CLK_TCK` a second):
# `cpu_ticks PID`. Fields 14 and 15 of /proc/PID/stat.
cpu_ticks() { stat_fields "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# The same per thread, user and system apart, summed by thread name (the first thread, where
# tokio's runtime runs, as "main"): `thread_ticks PID` prints "NAME UTIME STIME" lines (names
# with spaces get underscores). Threads that ended before the call are not in it.
thread_ticks() {
    local t
    for t in /proc/"$1"/task/*; do
        if [ "${t##*/}" = "$1" ]; then printf 'main '; else printf '%s ' "$(tr ' ' _ <"$t/comm" 2>/dev/null)"; fi
        stat_fields "$t/stat" 2>/dev/null | awk '{ print $12, $13 }'
    done | awk 'NF == 3 { u[$1] += $2; s[$1] += $3 } END { for (n in u) print n, u[n], s[n] }'
}

# Minor page faults of a process so far (field 10 of /proc/PID/stat): `minor_faults PID`.
minor_faults() { stat_fields "/proc/$1/stat" | awk '{ print $8 }'; }

# CPU time of a process so far by the scheduler's own clock, in ns: `sched_ns PID`, the sum of
# its threads' /proc/PID/task/TID/schedstat (first field: time on a CPU, counted at every switch).
# utime and stime are sampled at each timer tick instead, which misses or overcounts a process
# that runs in many short bursts (a poll's answer, a timer) in step with the tick.
sched_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ n += $1 } END { printf "%.0f\n", n }'; }

# Waits up to N tenths of a second until a line of FILE matches PATTERN (grep): `wait_line FILE
# PATTERN N`; fails if none did.
wait_line() {
    for _ in $(seq 1 "$3"); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    grep -q "$2" "$1" 2>/dev/null
}

# Sends SIGNAL to a process and reaps it, whatever its exit status: `stop_process INT PID`.
stop_process() {
    kill -"$1" "$2"
    wait "$2" || true
}

# Exits the script, saying which is missing, unless every named command is installed:
# `need_tools "Debian: mosquitto, jq" mosquitto jq`.
need_tools() {
    local hint=$1 tool
    shift
    for tool in "$@"; do
        command -v "$tool" >/dev/null || {
            echo "${0##*/}: $tool is missing ($hint)" >&2
            exit 1
        }
    done
}

# Kills (SIGTERM) the processes given by id and reaps them, passing over empty ids and processes
# already gone; for the EXIT trap: `kill_all "$a" "$b"`.
kill_all() {
    local p
    for p in "$@"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    for p in "$@"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
}

# Runs `BIN poll --config CONFIG` (stdout to /dev/null, stderr to ERR) for SECONDS, then stops it
# with SIGINT: `measure_poll BIN CONFIG SECONDS ERR`. Sets poll_t0 and poll_t1 (wall clock around
# the run, s), poll_ticks (its CPU time, as cpu_ticks) and poll_peak_kb (its VmHWM, KiB) just
# before stopping it; poll_pid holds its id while it runs, for the caller's EXIT trap.
measure_poll() {
    poll_t0=$(date +%s.%N)
    "$1" poll --config "$2" >/dev/null 2>"$4" &
    poll_pid=$!
    sleep "$3"
    poll_t1=$(date +%s.%N)
    poll_ticks=$(cpu_ticks "$poll_pid")
    poll_peak_kb=$(hwm_kb "$poll_pid")
    stop_process INT "$poll_pid"
    poll_pid=""
}

# Zone and rack ids of the sites bench-scale and soak generate: `zid 3` is z03, `rid 3 7` z03-r07.
zid() { printf 'z%02d' "$1"; }
rid() { printf 'z%02d-r%02d' "$1" "$2"; }

# The simulator's devices of zone Z in a generated site (sim.toml): RACKS thermal probes (units
# 1..RACKS) and CRAHS CRAHs (the units after them) behind one Modbus TCP gateway on MB_PORT, and
# per rack an A and a B feed PDU of PDU_PROFILE with ROWS table rows, on UDP ports from SNMP_PORT:
# `sim_zone Z RACKS CRAHS MB_PORT PDU_PROFILE ROWS SNMP_PORT`.
sim_zone() {
    local z=$1 n=$2 crahs=$3 mb_port=$4 pdu_profile=$5 rows=$6 snmp_port=$7 racks racks2 pdus
    racks=$(for r in $(seq 1 "$n"); do printf '"%s", ' "$(rid "$z" "$r")"; done)
    racks2=$(for r in $(seq 1 "$n"); do printf '"%s", "%s", ' "$(rid "$z" "$r")" "$(rid "$z" "$r")"; done)
    pdus=$(for r in $(seq 1 "$n"); do printf '"pdu-%s-a", "pdu-%s-b", ' "$(rid "$z" "$r")" "$(rid "$z" "$r")"; done)
    cat <<EOT

[[sim.devices]]
profile = "modbus-th-probe"
id_prefix = "th-$(zid "$z")-"
count = $n
zone = "$(zid "$z")"
racks = [${racks%, }]
port = $mb_port
first_unit = 1

[[sim.devices]]
profile = "generic-crah"
id_prefix = "crah-$(zid "$z")-"
count = $crahs
zone = "$(zid "$z")"
port = $mb_port
first_unit = $((n + 1))

[[sim.devices]]
profile = "$pdu_profile"
ids = [${pdus%, }]
zone = "$(zid "$z")"
racks = [${racks2%, }]
base_port = $snmp_port
rows = $rows
baseline = { phase_current_a = 4.0, outlet_current_a = 0.5, power_w = 900.0 }
EOT
}

# The agent's [[zones]] of a generated site (agent config): ZONES zones of RACKS racks each, every
# zone adjacent to the one before and after it: `agent_zones ZONES RACKS`.
agent_zones() {
    local zones=$1 n=$2 z racks adj
    for z in $(seq 1 "$zones"); do
        racks=$(for r in $(seq 1 "$n"); do printf '"%s", ' "$(rid "$z" "$r")"; done)
        adj=""
        [ "$z" -gt 1 ] && adj="\"$(zid $((z - 1)))\", "
        [ "$z" -lt "$zones" ] && adj="$adj\"$(zid $((z + 1)))\", "
        printf '\n[[zones]]\nid = "%s"\nracks = [%s]\nadjacent = [%s]\n' "$(zid "$z")" "${racks%, }" "${adj%, }"
    done
}
