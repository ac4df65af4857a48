// Package attack holds root tests that attack a running xstack program on
// a rig (internal/rigtest) and in-memory tests of the socket table's
// limits:
//
//   - TestSYNFlood: hping3 floods helloworld with SYNs from random spoofed
//     sources while a kernel client opens connections and keep-alive
//     connections make requests. SYN cookies must engage
//     (tcp.listen_overflow_syn_cookie_sent), ≥ 95% of the client's
//     connections succeed, the half-open (SYN_RECV) count stays within the
//     backlog and returns to 0, and the stack's memory stays bounded. The
//     keep-alive rate under the flood is judged against the rate beside the
//     same hping3 flooding a black hole in the peer namespace from the same
//     CPU (decoyWindows): on two CPUs the generator takes one whole, which
//     a real server's attackers do not; the rate without any flood and the
//     kernel's own server under the same floods are reported beside it.
//   - TestSlowloris: 2,000 connections send a request head one byte a
//     second; helloworld's -header-timeout must close each in time.
//   - TestStalledReaders: 2,000 connections to echo's chargen never read;
//     memory per connection stays within net.inet.tcp.sendspace,
//     net.inet.tcp.user_timeout aborts connections whose window stays
//     shut, and the keepalive sysctls (with always_keepalive) abort idle
//     connections whose peer vanished.
//   - TestFDTableFull: a full descriptor table (posix.Sockets.SetMaxFDs)
//     gives EMFILE from Socket, EpollCreate and Accept, keeps the pending
//     connection queued, and recovers after a close.
//   - TestSocketMemoryLimit: with net.inet.tcp.mem_limit holding 4
//     connections, 10 clients connect and send; the server accepts until
//     ENOBUFS, serves and closes what it accepted, and accepts again. The
//     waiting connections stay queued, Socket gives ENOBUFS while UDP and
//     epoll keep working, every client gets every byte back, and no
//     reservation is left.
//   - TestSocketMemoryLimitRig: the same through config.ini on the rig:
//     helloworld with mem_limit for 4 connections answers 10 kernel
//     clients 4 at a time as they close, tcp.mem_refused counts the
//     refusals, tcp.mem_reserved follows the open connections and ends at
//     0.
//
// # What the stack does under these attacks
//
//   - SYN flood: each listener keeps at most backlog half-open
//     connections; past that gVisor answers with SYN cookies
//     (net.inet.tcp.syncookies=1, the default; 2 uses cookies always).
//     A SYN that finds the accept queue full is dropped
//     (tcp.listen_overflow_syn_drop). A half-open connection whose peer
//     never answers lives 127 s (six SYN-ACK retransmissions, 1 s doubling;
//     Linux gives up after 63 s); gVisor has no knob for that.
//   - Frames are copied out of UMEM as they are received, so an
//     application that stops reading cannot pin NIC frames: its receive
//     window closes and the peer stops sending. Frames are lost only when
//     the lcore loop itself does not run (nic.kernel.rx_ring_full,
//     nic.kernel.rx_fill_ring_empty, nic.kernel.rx_dropped).
//   - Socket buffers: a TCP write that finds the send buffer full returns
//     EAGAIN on a non-blocking socket (or waits). Each TCP socket that can
//     carry data reserves the most its buffers may hold, and
//     net.inet.tcp.mem_limit bounds the reservations of an lcore: past it
//     Socket, Accept and SO_SNDBUF/SO_RCVBUF fail with ENOBUFS (Accept
//     leaving the connection queued) until sockets are closed. Without a
//     limit (the default) the bound is the buffers per connection times the
//     number of connections, which the descriptor table (EMFILE) and the
//     listen backlog bound.
//   - Descriptor table: Socket, Accept and EpollCreate return EMFILE when
//     the table is full; Accept leaves the connection queued, as Linux does.
//
// # Running
//
//	XSTACK_REQUIRE_ROOT=1 go test ./internal/attack
//
// takes about three minutes, most of it waiting for the SYN flood's
// half-open connections to time out. XSTACK_ATTACK_HEAVY=1 runs longer
// phases with more connections. The request-rate ratios (a normal client's
// rate under attack over its rate without) are logged and held to a floor
// of 0.30; XSTACK_ATTACK_STRICT=1 holds them to the 0.80 target, which
// needs a machine whose cores are not shared with other work.
// XSTACK_ATTACK_CPUPROFILE=file makes the flooded helloworld write a CPU
// profile.
package attack
