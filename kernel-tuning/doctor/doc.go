// Package doctor answers an operator's sizing question, "how many clients
// will this host hold, and what do I change to hold more?", from the host
// itself.
//
// Read collects the host's limits and current usage from a root directory
// ("/" on the live host, a recorded snapshot of /proc and /sys in tests).
// Analyze turns them into a capacity in client connections per limit, using
// the memory model in model.go, and walks the limits from the lowest up:
// which one stops a target connection count first, the exact change that
// lifts it (a sysctl, a ulimit, a systemd line), and whether the target fits
// once every change this host could apply is made. A limit that cannot be
// raised from here (a hard RLIMIT_NOFILE without CAP_SYS_RESOURCE, a
// container's read-only /proc/sys, the memory there is) is said to be so,
// with the way around it.
//
// docs/kernel-tuning.md explains every limit: what fails when it runs out,
// how to see it happening, and the setting that raises it.
package doctor
