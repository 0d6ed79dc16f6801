#!/usr/bin/env bash
# Installs the Debian packages the test suite drives, when they are missing:
#   sipp             (package sip-tester)  SIP load and scenario tests
#   baresip          (package baresip)     a real softphone as PBX/trunk peer
#   kamailio         (package kamailio)    syntax check of deploy/kamailio/kamailio.cfg
#   systemd-analyze  (package systemd)     check of deploy/callgate.service
#   espeak-ng        (package espeak-ng)   real speech for the DTMF talk-off tests
#   sqlite3          (package sqlite3)     the fast CSV export on SQLite (optional at run time)
#   clang            (package clang)       compiles the kernel forwarder (gateway/media/*.bpf.c)
#   bpf_helpers.h    (package libbpf-dev)  its headers; brings libbpf1, which loads it
#   ethtool          (package ethtool)     checksum offload off in the kernel forwarder's netns test
#   callgrind_control (package valgrind)   instructions per call (tests/bench/bench_callcost.py)
# Run before the project is installed: `pip install` compiles the kernel
# forwarder only where clang and libbpf's headers are present.
# Quick and silent when everything is there. Needs root or password-less sudo
# to install; exits non-zero with the reason when the packages cannot be had.
set -euo pipefail

commands=(sipp baresip kamailio systemd-analyze espeak-ng sqlite3 clang /usr/include/bpf/bpf_helpers.h ethtool callgrind_control)
packages=(sip-tester baresip kamailio systemd espeak-ng sqlite3 clang libbpf-dev ethtool valgrind)

say() { printf 'install-test-deps: %s\n' "$*" >&2; }

# a command on PATH (or in sbin), or a file when given a path
have() {
    case "$1" in
        /*) [ -e "$1" ] ;;
        *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ;;
    esac
}

missing=()
for i in "${!commands[@]}"; do
    have "${commands[$i]}" || missing+=("${packages[$i]}")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    say "missing ${missing[*]}, and there is no apt-get here: install them by hand"
    exit 1
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        say "missing ${missing[*]}; run as root or with password-less sudo:"
        say "  sudo apt-get install ${missing[*]}"
        exit 1
    fi
fi

say "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get update -q >&2; then
    say "apt-get update failed: check the network and /etc/apt/sources.list"
    exit 1
fi
if ! "${sudo[@]}" apt-get install -y -q "${missing[@]}" >&2; then
    say "apt-get install ${missing[*]} failed"
    exit 1
fi

# The kamailio package enables its own service on port 5060, where the
# gateway listens; only its binary is wanted here.
if [[ " ${missing[*]} " == *" kamailio "* ]] && [ -d /run/systemd/system ]; then
    "${sudo[@]}" systemctl disable --now kamailio.service >/dev/null 2>&1 || true
fi

for i in "${!commands[@]}"; do
    if ! have "${commands[$i]}"; then
        say "${commands[$i]} is still missing after installing ${packages[$i]}"
        exit 1
    fi
done
say "done"
