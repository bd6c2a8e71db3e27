#!/usr/bin/env bash
# Prepares this machine for kube-audit-rest's tests from the list in needs.txt (beside this script), then
# optionally runs a command with the tools on PATH. `bun run test` calls it first; so does CI, through it.
#
#   setup.sh [--check] [--needs FILE] [-- COMMAND [ARGS...]]
#
# For each `deb` and `pip` line it looks for the command; only when something is missing does it install:
# Debian packages with apt-get (as root, where apt-get exists), PyPI tools with `python3 -m pip`. Then it
# runs every `build` script, which returns at once when its output is up to date. With everything in
# place the whole check takes well under a second. What it cannot install, it names, with the command
# that would, and exits 1.
#
#   --check       install and build nothing: exit 1 naming whatever is missing
#   --needs FILE  read FILE instead of needs.txt
#   COMMAND       run (exec) once all is ready, with pip's script folder and each `path` folder in front
#                 of PATH, so that tools pip put off PATH are found by the tests
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
needs="$here/needs.txt"
check_only=0
started=$EPOCHREALTIME

usage() {
  echo "usage: $0 [--check] [--needs FILE] [-- COMMAND [ARGS...]]" >&2
  exit 2
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --check) check_only=1; shift ;;
    --needs) [[ $# -ge 2 ]] || usage; needs="$2"; shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[[ -r "$needs" ]] || { echo "setup: cannot read $needs" >&2; exit 2; }

say() { echo "setup: $*" >&2; }

deb_commands=() deb_packages=()
pip_commands=() pip_requirements=()
builds=()
path_dirs=()

# Reads the needs file: `#` starts a comment; words are separated by blanks.
lineno=0
bad_line() { say "$needs:$lineno: $1: ${line%%#*}"; exit 2; }
while IFS= read -r line || [[ -n "$line" ]]; do
  lineno=$((lineno + 1))
  read -r -a words <<<"${line%%#*}"
  [[ ${#words[@]} -gt 0 ]] || continue
  case "${words[0]}" in
    deb)
      [[ ${#words[@]} -eq 3 ]] || bad_line 'expected: deb COMMAND PACKAGE'
      deb_commands+=("${words[1]}") deb_packages+=("${words[2]}") ;;
    pip)
      [[ ${#words[@]} -eq 3 ]] || bad_line 'expected: pip COMMAND REQUIREMENT'
      pip_commands+=("${words[1]}") pip_requirements+=("${words[2]}") ;;
    build)
      [[ ${#words[@]} -ge 2 ]] || bad_line 'expected: build SCRIPT [ARGS...]'
      builds+=("${words[*]:1}") ;;
    path)
      [[ ${#words[@]} -eq 3 ]] || bad_line 'expected: path VAR DEFAULT'
      dir="${!words[1]:-${words[2]}}"
      [[ "$dir" == /* ]] || dir="$repo/$dir"
      path_dirs+=("$dir") ;;
    *) bad_line "unknown kind '${words[0]}' (deb, pip, build, path)" ;;
  esac
done <"$needs"

# The Debian packages whose command is not on PATH.
missing_debs() {
  local i
  for i in "${!deb_commands[@]}"; do
    command -v "${deb_commands[$i]}" >/dev/null || echo "${deb_packages[$i]}"
  done
}

# Where `python3 -m pip install` puts scripts (pyenv's version folder, /usr/local/bin, a venv's bin).
# Asked only when a pip command is not on PATH, since starting Python costs tens of milliseconds.
pip_scripts=''
for c in "${pip_commands[@]}"; do
  if ! command -v "$c" >/dev/null && command -v python3 >/dev/null; then
    pip_scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
    break
  fi
done

# A virtual environment of the project's own for PyPI tools where the system's Python will not take them
# (Debian's is "externally managed") or has no pip: made on first need, reused after.
venv="$repo/.cache/python"

# The pip requirements whose command is neither on PATH, nor in pip's script folder, nor in the venv.
missing_pips() {
  local i
  for i in "${!pip_commands[@]}"; do
    command -v "${pip_commands[$i]}" >/dev/null && continue
    [[ -n "$pip_scripts" && -x "$pip_scripts/${pip_commands[$i]}" ]] && continue
    [[ -x "$venv/bin/${pip_commands[$i]}" ]] && continue
    echo "${pip_requirements[$i]}"
  done
}

mapfile -t debs < <(missing_debs)
mapfile -t pips < <(missing_pips)
tried_install=0

if [[ ${#debs[@]} -gt 0 ]]; then
  if [[ $check_only -eq 0 && $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing Debian packages: ${debs[*]}"
    tried_install=1
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${debs[@]}" >/dev/null
    mapfile -t debs < <(missing_debs)
  fi
fi
has_venv() { command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; }
if [[ ${#pips[@]} -gt 0 && $check_only -eq 0 ]]; then
  # A machine with no Python at all (only Node.js, npm and Go): Debian's python3-venv brings Python too.
  if ! has_venv && [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
    say "installing Debian packages: python3-venv (for ${pips[*]})"
    tried_install=1
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  if has_venv; then
    say "installing from PyPI into ${venv#"$repo/"}: ${pips[*]}"
    tried_install=1
    [[ -x "$venv/bin/pip" ]] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${pips[@]}"
    mapfile -t pips < <(missing_pips)
  fi
fi

if [[ ${#debs[@]} -gt 0 || ${#pips[@]} -gt 0 ]]; then
  if [[ $tried_install -eq 1 ]]; then say "installing did not bring every command the tests need"; fi
  say "missing what the tests need (listed in ${needs#"$repo/"}):"
  [[ ${#debs[@]} -eq 0 ]] || say "  Debian packages: ${debs[*]}    install: sudo apt-get install ${debs[*]}"
  [[ ${#pips[@]} -eq 0 ]] || say "  PyPI: ${pips[*]}    install: python3 -m venv .cache/python && .cache/python/bin/pip install ${pips[*]} (Debian: apt-get install python3-venv first)"
  exit 1
fi

# --check leaves the builds out: each build script checks its own output, and building is its job.
for build in "${builds[@]}"; do
  [[ $check_only -eq 0 ]] || break
  read -r -a cmd <<<"$build"
  if ! (cd "$repo" && bash "${cmd[@]}" >&2); then
    say "${cmd[*]} failed; it is listed in ${needs#"$repo/"}"
    exit 1
  fi
done

elapsed=$(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
say "ready: ${#deb_commands[@]} Debian, ${#pip_commands[@]} PyPI, ${#builds[@]} build needs in ${elapsed}s"

[[ $# -gt 0 ]] || exit 0
extra="$(IFS=:; echo "${path_dirs[*]}")"
[[ -z "$pip_scripts" ]] || extra="${extra:+$extra:}$pip_scripts"
[[ ! -d "$venv/bin" ]] || extra="${extra:+$extra:}$venv/bin"
[[ -z "$extra" ]] || export PATH="$extra:$PATH"
exec "$@"
