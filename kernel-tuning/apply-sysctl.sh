#!/usr/bin/env bash
# apply-sysctl.sh: apply pushrelay's sysctl file to the running kernel.
#
#   apply-sysctl.sh --dry-run [FILE]   print running value -> value in FILE
#                                      for every key, marking the changes
#   apply-sysctl.sh [FILE]             write the changes (as root)
#
# FILE defaults to 99-pushrelay.conf beside this script. Unlike `sysctl -p`,
# a key whose comment block in FILE says "Raise only" is never lowered: on a
# host whose default is already higher (fs.file-max scales with memory),
# the running value is kept. Keys the kernel does not have (nf_conntrack
# while the module is not loaded) are reported and skipped.
#
# This applies the values until the next boot; to keep them, install FILE
# in /etc/sysctl.d/ (see its header).
#
# No sysctl here bounds what one client that stops reading pins in the
# kernel: autotuning grows its send buffer to tcp_wmem's maximum, and a
# thousand such clients can pass tcp_mem's pressure value for everyone.
# The relay's --sndbuf bounds it; `pushrelay doctor --target N` names it.
#
# PUSHRELAY_SYSCTL_ROOT (default /proc/sys) is where the values are read and
# written; the tests point it at a copy so that they never touch the kernel.
# Exit status: 0 done (or nothing to do), 1 a write failed, 2 usage or not
# root.
set -euo pipefail

usage() {
	sed -n '2,8s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

dry_run=0
file=""
for arg in "$@"; do
	case "$arg" in
	--dry-run | -n) dry_run=1 ;;
	-h | --help) usage ;;
	-*) echo "apply-sysctl.sh: unknown option $arg" >&2; usage ;;
	*)
		[[ -z "$file" ]] || { echo "apply-sysctl.sh: one FILE only" >&2; usage; }
		file="$arg"
		;;
	esac
done
[[ -n "$file" ]] || file="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/99-pushrelay.conf"
[[ -r "$file" ]] || { echo "apply-sysctl.sh: cannot read $file" >&2; exit 2; }
root="${PUSHRELAY_SYSCTL_ROOT:-/proc/sys}"

if [[ $dry_run -eq 0 && $(id -u) -ne 0 ]]; then
	echo "apply-sysctl.sh: writing sysctls needs root; run it with sudo, or with --dry-run to see the changes" >&2
	exit 2
fi

# normalize squeezes a value's whitespace (the kernel separates multi-value
# keys with tabs, sysctl.d files with spaces).
normalize() { tr -s ' \t' '  ' <<<"$1" | sed 's/^ //; s/ $//'; }

# lower reports whether want would lower running, comparing the values
# field by field as numbers.
lower() {
	local -a r w
	read -r -a r <<<"$1"
	read -r -a w <<<"$2"
	local i
	for i in "${!w[@]}"; do
		[[ "${r[i]:-}" =~ ^[0-9]+$ && "${w[i]}" =~ ^[0-9]+$ ]] || return 1
		((w[i] < r[i])) && return 0
	done
	return 1
}

changed=0 same=0 kept=0 skipped=0 failed=0
raise_only=0
printf '%-40s %-28s    %s\n' "key" "running" "new"
while IFS= read -r line || [[ -n "$line" ]]; do
	# A blank line ends a comment block; "Raise only" in a block applies
	# to the keys that follow it up to the next blank line.
	if [[ -z "${line//[[:space:]]/}" ]]; then
		raise_only=0
		continue
	fi
	if [[ "$line" =~ ^[[:space:]]*[#\;] ]]; then
		[[ "$line" == *"Raise only"* ]] && raise_only=1
		continue
	fi
	[[ "$line" == *=* ]] || { echo "apply-sysctl.sh: $file: not a key = value line: $line" >&2; exit 2; }
	key="$(normalize "${line%%=*}")"
	key="${key#-}" # sysctl.d's "-key" (ignore failure) prefix
	want="$(normalize "${line#*=}")"
	path="$root/${key//./\/}"
	if [[ ! -e "$path" ]]; then
		printf '%-40s %-28s    %s   (skipped: no such key in this kernel)\n' "$key" "-" "$want"
		skipped=$((skipped + 1))
		continue
	fi
	running="$(normalize "$(cat "$path")")"
	if [[ "$running" == "$want" ]]; then
		printf '%-40s %-28s    %s\n' "$key" "$running" "(unchanged)"
		same=$((same + 1))
		continue
	fi
	if [[ $raise_only -eq 1 ]] && lower "$running" "$want"; then
		printf '%-40s %-28s    %s   (kept: raise only, and the running value is higher)\n' "$key" "$running" "$want"
		kept=$((kept + 1))
		continue
	fi
	if [[ $dry_run -eq 1 ]]; then
		printf '%-40s %-28s -> %s   *\n' "$key" "$running" "$want"
		changed=$((changed + 1))
		continue
	fi
	if printf '%s\n' "$want" >"$path" 2>/dev/null && [[ "$(normalize "$(cat "$path")")" == "$want" ]]; then
		printf '%-40s %-28s -> %s   * written\n' "$key" "$running" "$want"
		changed=$((changed + 1))
	else
		printf '%-40s %-28s -> %s   FAILED\n' "$key" "$running" "$want"
		failed=$((failed + 1))
	fi
done <"$file"

if [[ $dry_run -eq 1 ]]; then
	echo "dry run: $changed to change (*), $same unchanged, $kept kept higher, $skipped skipped; nothing written"
else
	echo "$changed written, $same unchanged, $kept kept higher, $skipped skipped, $failed failed"
	echo "to keep them across reboots: install -m 0644 $file /etc/sysctl.d/"
fi
[[ $failed -eq 0 ]] || exit 1
