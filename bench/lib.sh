# Helpers the bench scripts share; sourced, not run.

# A free loopback TCP port.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Waits up to 10 s for URL to answer at all; exits the script if it never does.
wait_up() { for _ in $(seq 100); do curl -s -o /dev/null "$1" && return; sleep 0.1; done; echo "$1 did not answer" >&2; exit 1; }
# CPU time (user + system, in clock ticks) process PID has used so far.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
