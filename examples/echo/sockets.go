package main

import (
	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/posix"
)

// sockets is the socket API the server needs. xstack's posix package and
// the kernel (golang.org/x/sys/unix) both provide it, so the same server
// logic runs on either stack and benchmarks compare stacks, not servers.
type sockets interface {
	Socket(domain, typ, proto int) (int, error)
	SetsockoptInt(fd, level, opt, value int) error
	Bind(fd int, sa unix.Sockaddr) error
	Listen(fd, backlog int) error
	Accept4(fd, flags int) (int, unix.Sockaddr, error)
	Read(fd int, p []byte) (int, error)
	Write(fd int, p []byte) (int, error)
	RecvFrom(fd int, p []byte, flags int) (int, unix.Sockaddr, error)
	SendTo(fd int, p []byte, flags int, to unix.Sockaddr) error
	Close(fd int) error
	EpollCreate1(flags int) (int, error)
	EpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error
	EpollWait(epfd int, events []unix.EpollEvent, msec int) (int, error)
}

var (
	_ sockets = tableSockets{}
	_ sockets = kernelSockets{}
)

// tableSockets is xstack's socket API: one posix socket table (the
// process's one lcore's, or a test's).
type tableSockets struct{ t *posix.Sockets }

func (s tableSockets) Socket(d, t, p int) (int, error)     { return s.t.Socket(d, t, p) }
func (s tableSockets) SetsockoptInt(fd, l, o, v int) error { return s.t.SetsockoptInt(fd, l, o, v) }
func (s tableSockets) Bind(fd int, sa unix.Sockaddr) error { return s.t.Bind(fd, sa) }
func (s tableSockets) Listen(fd, n int) error              { return s.t.Listen(fd, n) }
func (s tableSockets) Read(fd int, p []byte) (int, error)  { return s.t.Read(fd, p) }
func (s tableSockets) Write(fd int, p []byte) (int, error) { return s.t.Write(fd, p) }
func (s tableSockets) Close(fd int) error                  { return s.t.CloseFD(fd) }
func (s tableSockets) EpollCreate1(f int) (int, error)     { return s.t.EpollCreate(f) }
func (s tableSockets) Accept4(fd, f int) (int, unix.Sockaddr, error) {
	return s.t.Accept4(fd, f)
}
func (s tableSockets) RecvFrom(fd int, p []byte, f int) (int, unix.Sockaddr, error) {
	return s.t.RecvFrom(fd, p, f)
}
func (s tableSockets) SendTo(fd int, p []byte, f int, to unix.Sockaddr) error {
	_, err := s.t.SendTo(fd, p, f, to)
	return err
}
func (s tableSockets) EpollCtl(ep, op, fd int, ev *unix.EpollEvent) error {
	return s.t.EpollCtl(ep, op, fd, ev)
}
func (s tableSockets) EpollWait(ep int, evs []unix.EpollEvent, ms int) (int, error) {
	return s.t.EpollWait(ep, evs, ms)
}

// kernelSockets is the Linux kernel's socket API.
type kernelSockets struct{}

func (kernelSockets) Socket(d, t, p int) (int, error)     { return unix.Socket(d, t|unix.SOCK_CLOEXEC, p) }
func (kernelSockets) SetsockoptInt(fd, l, o, v int) error { return unix.SetsockoptInt(fd, l, o, v) }
func (kernelSockets) Bind(fd int, sa unix.Sockaddr) error { return unix.Bind(fd, sa) }
func (kernelSockets) Listen(fd, n int) error              { return unix.Listen(fd, n) }
func (kernelSockets) Accept4(fd, f int) (int, unix.Sockaddr, error) {
	return unix.Accept4(fd, f|unix.SOCK_CLOEXEC)
}
func (kernelSockets) Read(fd int, p []byte) (int, error)  { return unix.Read(fd, p) }
func (kernelSockets) Write(fd int, p []byte) (int, error) { return unix.Write(fd, p) }
func (kernelSockets) Close(fd int) error                  { return unix.Close(fd) }
func (kernelSockets) EpollCreate1(f int) (int, error) {
	return unix.EpollCreate1(f | unix.EPOLL_CLOEXEC)
}
func (kernelSockets) RecvFrom(fd int, p []byte, f int) (int, unix.Sockaddr, error) {
	return unix.Recvfrom(fd, p, f)
}
func (kernelSockets) SendTo(fd int, p []byte, f int, to unix.Sockaddr) error {
	return unix.Sendto(fd, p, f, to)
}
func (kernelSockets) EpollCtl(ep, op, fd int, ev *unix.EpollEvent) error {
	return unix.EpollCtl(ep, op, fd, ev)
}
func (kernelSockets) EpollWait(ep int, evs []unix.EpollEvent, ms int) (int, error) {
	return unix.EpollWait(ep, evs, ms)
}
