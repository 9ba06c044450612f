#!/usr/bin/env bash
# Make sure a Docker engine answers; install and start one when none does.
#
#   $ scripts/install-docker.sh
#   docker: engine answers (20.10.24+dfsg1), leaving it alone
#
# On a machine with no engine it installs Debian's docker.io (apt-get update first), starts
#   dockerd --iptables=false --bridge=none
# in the background (log: /var/log/pidmap-dockerd.log) and waits until it answers. Idempotent:
# an engine that already answers is never touched. It also installs what the sandbox's images are
# built from when it is missing: busybox-static, containerd (ctr, the runc v2 shim), runc, procps,
# gcc and libc6-dev (static pause). Needs root for anything it installs or starts.
set -euo pipefail

say() { printf 'docker: %s\n' "$*"; }
answers() { docker version --format '{{.Server.Version}}' 2>/dev/null; }

need_pkgs=()
command -v dockerd >/dev/null 2>&1 || need_pkgs+=(docker.io)
command -v docker >/dev/null 2>&1 || need_pkgs+=(docker.io)
# The node image needs a statically linked busybox (the one pidmap/sandbox/cluster/image.py looks for);
# Debian's plain `busybox` package is dynamic and does not count.
static_busybox() {
  local candidate
  for candidate in /bin/busybox /usr/bin/busybox /usr/local/bin/busybox; do
    [ -x "$candidate" ] || continue
    # ldd fails (exit 1) on a static binary: read its words, not its status (pipefail is on).
    if command -v ldd >/dev/null 2>&1; then
      grep -qE 'not a dynamic executable|statically linked' <<<"$(ldd "$candidate" 2>&1 || true)" && return 0
    elif command -v file >/dev/null 2>&1; then
      grep -qE 'statically linked|static-pie linked' <<<"$(file -L "$candidate" 2>&1 || true)" && return 0
    fi
  done
  return 1
}
static_busybox || need_pkgs+=(busybox-static)
# Every sandbox node runs kind's container runtime, copied from this machine: containerd, ctr and the
# runc v2 shim (Debian's containerd package, a dependency of docker.io), runc, and procps's ps.
command -v containerd >/dev/null 2>&1 || need_pkgs+=(containerd)
command -v ctr >/dev/null 2>&1 || need_pkgs+=(containerd)
command -v containerd-shim-runc-v2 >/dev/null 2>&1 || need_pkgs+=(containerd)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need_pkgs+=(runc)
[ -x /usr/bin/ps ] || need_pkgs+=(procps)
# The pod images' /pause (registry.k8s.io/pause) and the shell-less image's program are compiled
# static here: gcc and the static C library.
command -v gcc >/dev/null 2>&1 || need_pkgs+=(gcc)
[ -f /usr/lib/x86_64-linux-gnu/libc.a ] || ls /usr/lib/*/libc.a >/dev/null 2>&1 || need_pkgs+=(libc6-dev)
# Each package once (containerd provides three of the commands looked for).
if [ ${#need_pkgs[@]} -gt 0 ]; then
  mapfile -t need_pkgs < <(printf '%s\n' "${need_pkgs[@]}" | awk '!seen[$0]++')
fi

if version=$(answers) && [ -n "$version" ] && [ ${#need_pkgs[@]} -eq 0 ]; then
  say "engine answers ($version), leaving it alone"
  exit 0
fi

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    say "missing ${need_pkgs[*]}; run this script as root to install them" >&2
    exit 1
  fi
  say "installing ${need_pkgs[*]} from Debian (apt-get update first)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # shellcheck disable=SC2046
  apt-get install -y -q --no-install-recommends $(printf '%s\n' "${need_pkgs[@]}" | sort -u) >/dev/null
fi

if version=$(answers) && [ -n "$version" ]; then
  say "engine answers ($version), leaving it alone"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  say "no engine answers and only root can start one here" >&2
  exit 1
fi
if pgrep -x dockerd >/dev/null; then
  say "dockerd is running but does not answer yet; waiting"
else
  say "starting dockerd --iptables=false --bridge=none (log: /var/log/pidmap-dockerd.log)"
  # containerd comes with docker.io; dockerd starts its own when none runs.
  setsid nohup dockerd --iptables=false --bridge=none >/var/log/pidmap-dockerd.log 2>&1 </dev/null &
fi
for _ in $(seq 1 60); do
  if version=$(answers) && [ -n "$version" ]; then
    say "engine answers ($version)"
    exit 0
  fi
  sleep 1
done
say "dockerd did not answer within 60 s; see /var/log/pidmap-dockerd.log" >&2
exit 1
