package posix_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/internal/xstest"
)

// pollOnce returns the events EpollWait(msec 0) reports for fd (0 if none).
func pollOnce(t *testing.T, e *env, epfd, fd int) uint32 {
	t.Helper()
	evs := make([]unix.EpollEvent, 8)
	n := must1[int](t)(e.A.EpollWait(epfd, evs, 0))
	for _, ev := range evs[:n] {
		if int(ev.Fd) == fd {
			return ev.Events
		}
	}
	return 0
}

func TestEpollLevelVersusEdge(t *testing.T) {
	for _, tc := range []struct {
		name string
		et   bool
	}{{"level", false}, {"edge", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			cfd, sfd := connected(t, e, families[0])
			events := uint32(unix.EPOLLIN)
			if tc.et {
				events |= unix.EPOLLET
			}
			ep := epollAdd(t, e.A, -1, cfd, events)
			if ev := pollOnce(t, e, ep, cfd); ev != 0 {
				t.Fatalf("idle socket reported %s", xstest.Events(ev))
			}
			_, err := e.B.Write(sfd, []byte("0123456789"))
			must(t, err)
			waitEvents(t, e.A, ep, cfd, unix.EPOLLIN)
			// Data remains unread.
			got := pollOnce(t, e, ep, cfd)
			if tc.et && got != 0 {
				t.Fatalf("edge-triggered: reported again (%s) without new data", xstest.Events(got))
			}
			if !tc.et && got != unix.EPOLLIN {
				t.Fatalf("level-triggered: got %s while data is pending, want IN", xstest.Events(got))
			}
			// Drain partially: level keeps reporting, edge stays quiet.
			readFull(t, e.A, cfd, make([]byte, 4))
			got = pollOnce(t, e, ep, cfd)
			if (got != 0) == tc.et {
				t.Fatalf("after partial read: %s", xstest.Events(got))
			}
			// New data is a new edge.
			_, err = e.B.Write(sfd, []byte("x"))
			must(t, err)
			waitEvents(t, e.A, ep, cfd, unix.EPOLLIN)
			// Drained: nobody reports.
			readFull(t, e.A, cfd, make([]byte, 7))
			if got := pollOnce(t, e, ep, cfd); got != 0 {
				t.Fatalf("drained socket reported %s", xstest.Events(got))
			}
		})
	}
}

func TestEpollOneshot(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[1])
	ep := epollAdd(t, e.A, -1, cfd, unix.EPOLLIN|unix.EPOLLONESHOT)
	_, err := e.B.Write(sfd, []byte("a"))
	must(t, err)
	waitEvents(t, e.A, ep, cfd, unix.EPOLLIN)
	_, err = e.B.Write(sfd, []byte("b"))
	must(t, err)
	// Once "b" is queued too, a oneshot that still reported would say IN.
	eventually(t, "both bytes queued", func() bool { n, _ := e.A.IoctlGetInt(cfd, unix.SIOCINQ); return n == 2 })
	if got := pollOnce(t, e, ep, cfd); got != 0 {
		t.Fatalf("oneshot reported %s before re-arm", xstest.Events(got))
	}
	must(t, e.A.EpollCtl(ep, unix.EPOLL_CTL_MOD, cfd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLONESHOT, Fd: int32(cfd)}))
	if got := pollOnce(t, e, ep, cfd); got != unix.EPOLLIN {
		t.Fatalf("after MOD: %s, want IN", xstest.Events(got))
	}
	if got := pollOnce(t, e, ep, cfd); got != 0 {
		t.Fatalf("oneshot reported twice: %s", xstest.Events(got))
	}
}

func TestEpollRdHupOnPeerHalfClose(t *testing.T) {
	eachFamily(t, func(t *testing.T, e *env, fam family) {
		cfd, sfd := connected(t, e, fam)
		ep := epollAdd(t, e.A, -1, cfd, unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLOUT)
		must(t, e.B.Shutdown(sfd, unix.SHUT_WR))
		ev := waitEvents(t, e.A, ep, cfd, unix.EPOLLRDHUP)
		if want := uint32(unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP); ev != want {
			t.Fatalf("events %s, want %s", xstest.Events(ev), xstest.Events(want))
		}
		// Our own SHUT_WR as well: both directions shut is HUP.
		must(t, e.A.Shutdown(cfd, unix.SHUT_WR))
		waitEvents(t, e.A, ep, cfd, unix.EPOLLHUP)
	})
}

func TestEpollCtlErrors(t *testing.T) {
	e := newEnv(t)
	ep := must1[int](t)(e.A.EpollCreate(0))
	fd := must1[int](t)(e.A.Socket(unix.AF_INET, unix.SOCK_STREAM, 0))
	ev := &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}
	tests := []struct {
		name string
		err  func() error
		want unix.Errno
	}{
		{"mod unregistered", func() error { return e.A.EpollCtl(ep, unix.EPOLL_CTL_MOD, fd, ev) }, unix.ENOENT},
		{"del unregistered", func() error { return e.A.EpollCtl(ep, unix.EPOLL_CTL_DEL, fd, nil) }, unix.ENOENT},
		{"add", func() error { return e.A.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, ev) }, 0},
		{"add twice", func() error { return e.A.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, ev) }, unix.EEXIST},
		{"nil event", func() error { return e.A.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, nil) }, unix.EFAULT},
		{"bad epfd", func() error { return e.A.EpollCtl(999, unix.EPOLL_CTL_ADD, fd, ev) }, unix.EBADF},
		{"bad fd", func() error { return e.A.EpollCtl(ep, unix.EPOLL_CTL_ADD, 999, ev) }, unix.EBADF},
		{"epfd is fd", func() error { return e.A.EpollCtl(ep, unix.EPOLL_CTL_ADD, ep, ev) }, unix.EINVAL},
		{"epfd not epoll", func() error { return e.A.EpollCtl(fd, unix.EPOLL_CTL_ADD, ep, ev) }, unix.EINVAL},
		{"bad op", func() error { return e.A.EpollCtl(ep, 42, fd, ev) }, unix.EINVAL},
		{"exclusive mod", func() error {
			return e.A.EpollCtl(ep, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE})
		}, unix.EINVAL},
		{"del", func() error { return e.A.EpollCtl(ep, unix.EPOLL_CTL_DEL, fd, nil) }, 0},
		{"exclusive oneshot", func() error {
			return e.A.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE | unix.EPOLLONESHOT})
		}, unix.EINVAL},
	}
	for _, tc := range tests {
		wantErrno(t, tc.name, tc.err(), tc.want)
	}
	_, err := e.A.EpollWait(ep, nil, 0)
	wantErrno(t, "wait with no room", err, unix.EINVAL)
	_, err = e.A.EpollWait(fd, make([]unix.EpollEvent, 1), 0)
	wantErrno(t, "wait on a socket", err, unix.EINVAL)
	_, err = e.A.EpollCreate(42)
	wantErrno(t, "create bad flags", err, unix.EINVAL)
}

func TestEpollClosedSocketLeavesSet(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	ep := epollAdd(t, e.A, -1, cfd, unix.EPOLLIN)
	_, err := e.B.Write(sfd, []byte("x"))
	must(t, err)
	waitEvents(t, e.A, ep, cfd, unix.EPOLLIN)
	must(t, e.A.CloseFD(cfd))
	if got := pollOnce(t, e, ep, cfd); got != 0 {
		t.Fatalf("closed socket still reported: %s", xstest.Events(got))
	}
	// The number can be reused and registered afresh.
	nfd := must1[int](t)(e.A.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0))
	if nfd != cfd {
		t.Fatalf("fd %d not reused (got %d)", cfd, nfd)
	}
	epollAdd(t, e.A, ep, nfd, unix.EPOLLOUT)
}

func TestEpollWaitBlocksUntilReady(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	ep := epollAdd(t, e.A, -1, cfd, unix.EPOLLIN)
	start := time.Now()
	n := must1[int](t)(e.A.EpollWait(ep, make([]unix.EpollEvent, 1), 30))
	if n != 0 || time.Since(start) < 25*time.Millisecond {
		t.Fatalf("timeout wait: n=%d after %v", n, time.Since(start))
	}
	go func() {
		if err := untilParked("posix.(*Sockets).EpollWait"); err != nil {
			t.Error(err)
		}
		e.B.Write(sfd, []byte("x"))
	}()
	evs := make([]unix.EpollEvent, 1)
	n = must1[int](t)(e.A.EpollWait(ep, evs, -1))
	if n != 1 || evs[0].Events != unix.EPOLLIN {
		t.Fatalf("blocking wait: n=%d %s", n, xstest.Events(evs[0].Events))
	}
}

func TestEpollWaitWokenByClose(t *testing.T) {
	e := newEnv(t)
	ep := must1[int](t)(e.A.EpollCreate(0))
	err := wokenBy(t, "posix.(*Sockets).EpollWait", func() error {
		_, err := e.A.EpollWait(ep, make([]unix.EpollEvent, 1), -1)
		return err
	}, func() { e.A.Close() })
	wantErrno(t, "wait after Sockets.Close", err, unix.EBADF)
}

// TestEpollSocketInSeveralSets registers one socket in three instances,
// takes it out of one and back in, and closes an instance and then the
// socket: each registration keeps reporting on its own, whichever of the
// socket's registrations the socket holds itself.
func TestEpollSocketInSeveralSets(t *testing.T) {
	e := newEnv(t)
	cfd, sfd := connected(t, e, families[0])
	eps := []int{
		epollAdd(t, e.A, -1, cfd, unix.EPOLLIN),
		epollAdd(t, e.A, -1, cfd, unix.EPOLLIN),
		epollAdd(t, e.A, -1, cfd, unix.EPOLLIN),
	}
	must(t, e.A.EpollCtl(eps[0], unix.EPOLL_CTL_DEL, cfd, nil))
	must(t, e.A.EpollCtl(eps[1], unix.EPOLL_CTL_DEL, cfd, nil))
	must(t, e.A.EpollCtl(eps[1], unix.EPOLL_CTL_ADD, cfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(cfd)}))
	must(t, e.A.EpollCtl(eps[0], unix.EPOLL_CTL_ADD, cfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(cfd)}))
	err := e.A.EpollCtl(eps[2], unix.EPOLL_CTL_ADD, cfd, &unix.EpollEvent{Events: unix.EPOLLIN})
	wantErrno(t, "second add to the same instance", err, unix.EEXIST)
	_, err = e.B.Write(sfd, []byte("x"))
	must(t, err)
	for i, ep := range eps {
		if got := waitEvents(t, e.A, ep, cfd, unix.EPOLLIN); got != unix.EPOLLIN {
			t.Errorf("instance %d: %s, want EPOLLIN", i, xstest.Events(got))
		}
	}
	must(t, e.A.CloseFD(eps[1]))
	for _, ep := range []int{eps[0], eps[2]} {
		waitEvents(t, e.A, ep, cfd, unix.EPOLLIN)
	}
	must(t, e.A.CloseFD(cfd))
	for _, ep := range []int{eps[0], eps[2]} {
		if got := pollOnce(t, e, ep, cfd); got != 0 {
			t.Errorf("closed socket still reported: %s", xstest.Events(got))
		}
	}
}

// TestEpollCloseBothAtOnce closes a registered socket and its epoll
// instance from two goroutines at once, many times: whichever release
// comes first takes the registration out, and the other must find it
// gone, not half gone.
func TestEpollCloseBothAtOnce(t *testing.T) {
	e := newEnv(t)
	for range 200 {
		fd := must1[int](t)(e.A.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0))
		ep := epollAdd(t, e.A, -1, fd, unix.EPOLLIN)
		done := make(chan error)
		go func() { done <- e.A.CloseFD(ep) }()
		must(t, e.A.CloseFD(fd))
		must(t, <-done)
	}
}
