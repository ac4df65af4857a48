package xstest

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// epollNames are the epoll and poll event bits by name, in the order Linux
// numbers them.
var epollNames = []struct {
	bit  uint32
	name string
}{
	{unix.EPOLLIN, "IN"}, {unix.EPOLLPRI, "PRI"}, {unix.EPOLLOUT, "OUT"}, {unix.EPOLLERR, "ERR"},
	{unix.EPOLLHUP, "HUP"}, {unix.POLLNVAL, "NVAL"}, {unix.EPOLLRDNORM, "RDNORM"}, {unix.EPOLLRDBAND, "RDBAND"},
	{unix.EPOLLWRNORM, "WRNORM"}, {unix.EPOLLWRBAND, "WRBAND"}, {unix.EPOLLRDHUP, "RDHUP"},
	{unix.EPOLLET, "ET"}, {unix.EPOLLONESHOT, "ONESHOT"},
}

// Events spells an epoll or poll event mask for a test failure, such as
// "IN|OUT|RDNORM"; bits without a name are shown in hex, and no bits as "0".
func Events(e uint32) string {
	var s []string
	for _, n := range epollNames {
		if e&n.bit != 0 {
			s = append(s, n.name)
			e &^= n.bit
		}
	}
	if e != 0 {
		s = append(s, fmt.Sprintf("%#x", e))
	}
	if len(s) == 0 {
		return "0"
	}
	return strings.Join(s, "|")
}
