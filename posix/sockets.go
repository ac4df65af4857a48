package posix

import (
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	xstack "github.com/xstack/xstack/stack"
)

const (
	// firstFD is the lowest descriptor handed out. 0, 1 and 2 are left
	// alone so that numbers look like a fresh process's and a zero-valued
	// fd field is never a live socket.
	firstFD = 3
	// maxFDs bounds the table, standing in for RLIMIT_NOFILE (EMFILE).
	maxFDs = 1 << 20
)

// Sockets is one lcore's file-descriptor table and epoll instances over the
// lcore's stack. Everything it needs of the stack it asks the stack.Stack
// (endpoints, the sysctls' socket defaults, the active-port choice, routes);
// it does its I/O on the gVisor endpoints it gets, as gVisor's gonet does. It
// does not own the stack: close the Sockets first, then the stack. All
// methods are safe for concurrent use; see the package doc for the lcore
// loop's contract (EnterLoop, LeaveLoop).
type Sockets struct {
	stack *xstack.Stack

	mu sync.RWMutex
	// files is indexed by fd; a nil entry is free.
	// +checklocks:mu
	files []*file
	// lowFree is no greater than the lowest free fd ≥ firstFD.
	// +checklocks:mu
	lowFree int
	// +checklocks:mu
	closed bool
	// maxFD bounds fds (SetMaxFDs); 0 means maxFDs.
	// +checklocks:mu
	maxFD int

	// memMu guards the socket-buffer reservations (limits.go): the
	// table's total and each socket's share.
	memMu sync.Mutex
	// memReserved is the sum of the sockets' reservations and of those
	// held by accepts in progress.
	// +checklocks:memMu
	memReserved int64
	// memRefused counts the calls that failed with ENOBUFS because a
	// reservation did not fit under net.inet.tcp.mem_limit.
	memRefused atomic.Uint64

	// done is closed by Close and wakes every blocked call.
	done      chan struct{}
	closeOnce sync.Once

	// inLoop is set between EnterLoop and LeaveLoop; loopG is the id of
	// the goroutine that first called EnterLoop (0 before that).
	inLoop atomic.Bool
	loopG  atomic.Uint64
	// readyAdded is set when EpollCtl, inside the loop callback,
	// registers a socket that is ready for its events already.
	readyAdded atomic.Bool
}

// file is one entry of the table: a socket or an epoll instance, with the
// flags fcntl sees. refs counts the table's reference plus one for every call
// in progress; the object is released when it drops to zero, so an endpoint is
// never closed under a concurrent call (gVisor's Close requires that).
type file struct {
	refs     atomic.Int32
	nonblock atomic.Bool // O_NONBLOCK
	cloexec  atomic.Bool // FD_CLOEXEC: recorded for F_GETFD, nothing execs
	// +checklocks:closeMu
	fdClosed bool

	// closeMu guards fdClosed and closing. closing is closed when the fd
	// is closed, and blocked calls return EBADF then; it is made by the
	// first call that blocks (closed at once if the fd is closed
	// already), so that a file nothing ever blocks on, as every socket
	// the lcore loop serves, costs no channel.
	closeMu sync.Mutex
	// +checklocks:closeMu
	closing chan struct{}

	sock *socket    // exactly one of sock and ep is set
	ep   *eventPoll //
}

// NewSockets returns an empty descriptor table over st. New TCP sockets take
// the per-socket defaults the sysctls set on st (keepalive, user timeout;
// net.inet.tcp.mem_limit bounds their buffers, see the package doc), and
// connect(2) lets st choose the local port, so that the replies come back
// to the lcore's queue (stack.Stack.ConnectTCP). A nil st makes a table
// that must be closed before use.
func NewSockets(st *xstack.Stack) *Sockets {
	return &Sockets{
		stack:   st,
		lowFree: firstFD,
		done:    make(chan struct{}),
	}
}

// Stack returns the stack the sockets live on.
func (t *Sockets) Stack() *xstack.Stack { return t.stack }

// EnterLoop marks the start of the application's loop callback on the lcore
// loop goroutine. Until LeaveLoop, a call made on that goroutine that would
// block returns EAGAIN (EINPROGRESS for Connect) instead, and EpollWait does
// not wait. The first EnterLoop binds the loop goroutine for the life of t:
// the lcore loop must always run on the same goroutine. EnterLoop and
// LeaveLoop cost two atomic stores per pass.
func (t *Sockets) EnterLoop() {
	if t.loopG.Load() == 0 {
		t.loopG.Store(curGoroutineID())
	}
	t.inLoop.Store(true)
}

// LeaveLoop marks the end of the application's loop callback.
func (t *Sockets) LeaveLoop() { t.inLoop.Store(false) }

// maxCallbackRuns bounds how many times RunCallback calls the callback in
// one pass.
const maxCallbackRuns = 4

// RunCallback runs the application's loop callback for one pass, between
// EnterLoop and LeaveLoop. When the callback registers with EpollCtl a
// socket that is ready already (typically one it has just accepted, whose
// request came with the handshake's last ACK), RunCallback calls it again,
// up to maxCallbackRuns times in all, so that its next EpollWait reports
// the socket in this same pass. A nil loop is no callback. The kernel's epoll reports such a socket
// at the application's next epoll_wait; without the second call that
// would be the next pass, after the pass's frames have gone out, and the
// ACK of the request would leave alone instead of with the response.
func (t *Sockets) RunCallback(loop func() error) error {
	t.EnterLoop()
	defer t.LeaveLoop()
	if loop == nil {
		return nil
	}
	for range maxCallbackRuns {
		t.readyAdded.Store(false)
		if err := loop(); err != nil {
			return err
		}
		if !t.readyAdded.Load() {
			break
		}
	}
	return nil
}

// onLoopGoroutine reports whether the caller is the loop goroutine inside
// its callback. It is only asked on the slow path, when a call would block.
func (t *Sockets) onLoopGoroutine() bool {
	return t.inLoop.Load() && curGoroutineID() == t.loopG.Load()
}

// curGoroutineID parses the calling goroutine's id from its stack header
// ("goroutine 42 [running]:"). It costs microseconds, which is why it is
// only used on paths that would otherwise block.
func curGoroutineID() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	const prefix = "goroutine "
	if len(b) < len(prefix) {
		return 0
	}
	var id uint64
	for _, c := range b[len(prefix):] {
		if c < '0' || c > '9' {
			break
		}
		id = id*10 + uint64(c-'0')
	}
	return id
}

// Close closes every descriptor as close(2) would (a FIN, or a RST where
// Linux sends one: unread data, SO_LINGER 0, unaccepted connections), wakes
// every blocked call, and makes further calls fail (EBADF, or ENETDOWN for
// Socket and EpollCreate). It is idempotent. It does not close the stack.
func (t *Sockets) Close() {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		files := t.files
		t.files = nil
		t.mu.Unlock()
		close(t.done)
		for _, f := range files {
			if f != nil {
				f.closeFD()
			}
		}
	})
}

// install puts f in the lowest free slot and returns its fd. The table holds
// the reference f was created with.
func (t *Sockets) install(f *file) (int, unix.Errno) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return -1, unix.ENETDOWN
	}
	fd := t.lowFree
	for fd < len(t.files) && t.files[fd] != nil {
		fd++
	}
	if fd >= t.limitLocked() {
		return -1, unix.EMFILE
	}
	for fd >= len(t.files) {
		t.files = append(t.files, nil)
	}
	t.files[fd] = f
	t.lowFree = fd + 1
	return fd, 0
}

// get returns the file at fd with a reference the caller must put.
func (t *Sockets) get(fd int) *file {
	t.mu.RLock()
	var f *file
	if fd >= 0 && fd < len(t.files) {
		f = t.files[fd]
		if f != nil {
			f.refs.Add(1)
		}
	}
	t.mu.RUnlock()
	return f
}

// socket returns the socket at fd with a reference: EBADF for a free fd,
// ENOTSOCK for an epoll instance.
func (t *Sockets) socket(fd int) (*socket, unix.Errno) {
	f := t.get(fd)
	if f == nil {
		return nil, unix.EBADF
	}
	if f.sock == nil {
		f.put()
		return nil, unix.ENOTSOCK
	}
	return f.sock, 0
}

// CloseFD is close(2) (the package-level Close): it frees fd at once. The
// endpoint is closed when the last call using it returns; calls blocked on
// it are woken and fail with EBADF. (Close, without an fd, closes the whole
// table.)
func (t *Sockets) CloseFD(fd int) error {
	t.mu.Lock()
	if fd < 0 || fd >= len(t.files) || t.files[fd] == nil {
		t.mu.Unlock()
		return unix.EBADF
	}
	f := t.files[fd]
	t.files[fd] = nil
	if fd < t.lowFree {
		t.lowFree = fd
	}
	t.mu.Unlock()
	f.closeFD()
	return nil
}

// closeFile is CloseFD for the holder of f, which may have been closed
// through its fd already (the fd may then name another file).
func (t *Sockets) closeFile(fd int, f *file) {
	t.mu.Lock()
	if fd < 0 || fd >= len(t.files) || t.files[fd] != f {
		t.mu.Unlock()
		return
	}
	t.files[fd] = nil
	if fd < t.lowFree {
		t.lowFree = fd
	}
	t.mu.Unlock()
	f.closeFD()
}

// tryGet takes a reference to f unless it has already been released; the
// net.Conn adapters hold files, not fds, and use it.
func (f *file) tryGet() bool {
	for {
		n := f.refs.Load()
		if n <= 0 {
			return false
		}
		if f.refs.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// closeFD is called once, when f leaves the table: it wakes blocked calls and
// drops the table's reference.
func (f *file) closeFD() {
	f.closeMu.Lock()
	f.fdClosed = true
	if f.closing != nil {
		close(f.closing)
	}
	f.closeMu.Unlock()
	f.put()
}

// closed returns a channel that is closed once the fd is: a blocking call
// selects on it.
func (f *file) closed() <-chan struct{} {
	f.closeMu.Lock()
	defer f.closeMu.Unlock()
	if f.closing == nil {
		f.closing = make(chan struct{})
		if f.fdClosed {
			close(f.closing)
		}
	}
	return f.closing
}

func (f *file) put() {
	if f.refs.Add(-1) == 0 {
		if f.sock != nil {
			f.sock.release()
		} else {
			f.ep.release()
		}
	}
}

func newFile() *file {
	f := new(file)
	f.refs.Store(1)
	return f
}

// Fcntl implements F_GETFL/F_SETFL (O_NONBLOCK; other status flags are
// ignored as Linux ignores them on sockets) and F_GETFD/F_SETFD
// (FD_CLOEXEC). Any other command is EINVAL.
func (t *Sockets) Fcntl(fd, cmd, arg int) (int, error) {
	f := t.get(fd)
	if f == nil {
		return -1, unix.EBADF
	}
	defer f.put()
	switch cmd {
	case unix.F_GETFL:
		fl := unix.O_RDWR
		if f.nonblock.Load() {
			fl |= unix.O_NONBLOCK
		}
		return fl, nil
	case unix.F_SETFL:
		f.nonblock.Store(arg&unix.O_NONBLOCK != 0)
		return 0, nil
	case unix.F_GETFD:
		if f.cloexec.Load() {
			return unix.FD_CLOEXEC, nil
		}
		return 0, nil
	case unix.F_SETFD:
		f.cloexec.Store(arg&unix.FD_CLOEXEC != 0)
		return 0, nil
	}
	return -1, unix.EINVAL
}

// IoctlSetInt implements FIONBIO. Other requests are ENOTTY.
func (t *Sockets) IoctlSetInt(fd int, req uint, value int) error {
	f := t.get(fd)
	if f == nil {
		return unix.EBADF
	}
	defer f.put()
	if req == FIONBIO {
		f.nonblock.Store(value != 0)
		return nil
	}
	return unix.ENOTTY
}

// IoctlGetInt implements FIONREAD (SIOCINQ: bytes readable; for UDP the size
// of the next datagram) and SIOCOUTQ (TIOCOUTQ: bytes not yet acknowledged).
// Other requests, and requests on epoll instances, are ENOTTY.
func (t *Sockets) IoctlGetInt(fd int, req uint) (int, error) {
	s, errno := t.socket(fd)
	if errno == unix.ENOTSOCK {
		return 0, unix.ENOTTY
	}
	if errno != 0 {
		return 0, errno
	}
	defer s.f.put()
	return s.ioctlGetInt(req)
}
