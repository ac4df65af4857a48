package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xstack/xstack/nic"
)

// In process mode the primary (proc-id 0) attaches the XDP program and
// serves its maps and bpf_link to the secondaries over a Unix socket in the
// run directory, with SCM_RIGHTS. Every secondary keeps the link's
// descriptor, so the program stays attached while any lcore process lives
// and the kernel detaches it when the last one dies.

// joinInfo travels with the descriptors.
type joinInfo struct {
	V      int         `json:"v"`
	Ifname string      `json:"ifname"`
	Mode   nic.XDPMode `json:"mode"`
	Lcores int         `json:"lcores"`
}

const joinVersion = 1

// joinServer hands the port's descriptors to secondaries.
type joinServer struct {
	ln   *net.UnixListener
	path string
	info joinInfo
	fds  []int
	log  *log.Logger
}

func listenJoin(path string, info joinInfo, fds []int, logger *log.Logger) (*joinServer, error) {
	os.Remove(path) // a socket left by a primary that died
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("join socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	js := &joinServer{ln: ln, path: path, info: info, fds: fds, log: logger}
	go js.routineServe()
	return js, nil
}

func (js *joinServer) routineServe() {
	msg, _ := json.Marshal(js.info)
	rights := unix.UnixRights(js.fds...)
	for {
		c, err := js.ln.AcceptUnix()
		if err != nil {
			return // closed
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, _, err := c.WriteMsgUnix(msg, rights, nil); err != nil {
			js.log.Printf("join: send descriptors: %v", err)
		}
		c.Close()
	}
}

func (js *joinServer) Close() {
	js.ln.Close()
	os.Remove(js.path)
}

// joinPrimary connects to the primary's join socket, waiting up to timeout
// for it to appear, and returns what it sent.
func joinPrimary(path string, timeout time.Duration) (joinInfo, []int, error) {
	var info joinInfo
	deadline := time.Now().Add(timeout)
	var c *net.UnixConn
	for {
		var err error
		c, err = net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return info, nil, fmt.Errorf("join the primary at %s: %w (is proc-id 0 running?)", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(16*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return info, nil, fmt.Errorf("join the primary at %s: %w", path, err)
	}
	var fds []int
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err == nil {
		for _, m := range msgs {
			got, err := unix.ParseUnixRights(&m)
			if err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if err := json.Unmarshal(buf[:n], &info); err != nil || info.V != joinVersion {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return info, nil, errors.New("join the primary at " + path + ": unexpected reply (a different xstack version?)")
	}
	return info, fds, nil
}
