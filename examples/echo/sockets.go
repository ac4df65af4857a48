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
	_ sockets = posixSockets{}
	_ sockets = kernelSockets{}
)

// posixSockets is xstack's socket API (the process's one lcore).
type posixSockets struct{}

func (posixSockets) Socket(d, t, p int) (int, error)     { return posix.Socket(d, t, p) }
func (posixSockets) SetsockoptInt(fd, l, o, v int) error { return posix.SetsockoptInt(fd, l, o, v) }
func (posixSockets) Bind(fd int, sa unix.Sockaddr) error { return posix.Bind(fd, sa) }
func (posixSockets) Listen(fd, n int) error              { return posix.Listen(fd, n) }
func (posixSockets) Read(fd int, p []byte) (int, error)  { return posix.Read(fd, p) }
func (posixSockets) Write(fd int, p []byte) (int, error) { return posix.Write(fd, p) }
func (posixSockets) Close(fd int) error                  { return posix.Close(fd) }
func (posixSockets) EpollCreate1(f int) (int, error)     { return posix.EpollCreate(f) }
func (posixSockets) Accept4(fd, f int) (int, unix.Sockaddr, error) {
	return posix.Accept4(fd, f)
}
func (posixSockets) RecvFrom(fd int, p []byte, f int) (int, unix.Sockaddr, error) {
	return posix.RecvFrom(fd, p, f)
}
func (posixSockets) SendTo(fd int, p []byte, f int, to unix.Sockaddr) error {
	_, err := posix.SendTo(fd, p, f, to)
	return err
}
func (posixSockets) EpollCtl(ep, op, fd int, ev *unix.EpollEvent) error {
	return posix.EpollCtl(ep, op, fd, ev)
}
func (posixSockets) EpollWait(ep int, evs []unix.EpollEvent, ms int) (int, error) {
	return posix.EpollWait(ep, evs, ms)
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
