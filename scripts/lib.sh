# Shared shell helpers for scripts/*: source it, do not run it.

# snmpsim's --help exits 1; the responder starts (with every module it imports) if the usage it
# prints names its options.
snmpsim_starts() { local out; out=$(snmpsim-command-responder --help 2>&1) || true; [[ $out == *--data-dir* ]]; }
