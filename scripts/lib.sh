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
