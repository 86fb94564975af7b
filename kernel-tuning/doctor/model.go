package doctor

// Model is the memory model: what one client connection costs, in bytes,
// so that "N clients need X GiB" is arithmetic. docs/kernel-tuning.md
// gives the measurements behind DefaultModel and the commands that
// reproduce them.
type Model struct {
	// KernelPerConn is the kernel's slab memory for one idle connection on
	// the relay's side: the TCP socket (the "TCP" cache, 2,364 bytes on
	// Linux 6.18), its socket inode (832), file (192), dentry (192), the
	// epoll watch (128 + 15), security blobs, and the slack of partly used
	// slab pages. Idle sockets hold no buffer memory: the kernel allocates
	// buffers when data is queued, not at accept.
	KernelPerConn int64 `json:"kernel_per_conn"`
	// RelayPerConn is the relay process's resident memory per idle
	// connection (session, registry entry, gnet connection).
	RelayPerConn int64 `json:"relay_per_conn"`
	// InFlightPerConn is the kernel memory one recipient holds while a
	// small broadcast message is queued or unacknowledged (the sk_buff and
	// its head), beyond the message's own bytes.
	InFlightPerConn int64 `json:"in_flight_per_conn"`
	// PagesInFlight is what the same recipient counts against tcp_mem: the
	// kernel charges socket memory in whole pages, so any queued data
	// costs at least one.
	PagesInFlight int64 `json:"tcp_mem_pages_in_flight"`
}

// DefaultModel holds the figures measured on the reference machine (Linux
// 6.18, x86_64, 2 cores, Go 1.26), each the highest of several runs,
// rounded up: kernel 4,070 to 4,880 bytes per socket, relay 782 to 793
// bytes RSS per connection, 1,080 bytes and 0.97 pages per queued message.
// See docs/kernel-tuning.md.
var DefaultModel = Model{
	KernelPerConn:   4900,
	RelayPerConn:    800,
	InFlightPerConn: 1100,
	PagesInFlight:   1,
}

// idle is what one idle client costs the host: the relay's socket and
// process memory, and with a load generator on the same host its socket
// too (the load generator's own process memory is not counted).
func (m Model) idle(loadgen bool) int64 {
	b := m.KernelPerConn + m.RelayPerConn
	if loadgen {
		b += m.KernelPerConn
	}
	return b
}

// peak is idle plus a small message in flight to every client; with a load
// generator the message also sits in its socket's receive queue until read.
func (m Model) peak(loadgen bool) int64 {
	b := m.idle(loadgen) + m.InFlightPerConn
	if loadgen {
		b += m.InFlightPerConn
	}
	return b
}
