// Package netns runs code inside a named network namespace.
//
// setns(2) moves only the calling OS thread, so Do locks the goroutine to its
// thread, enters the namespace, runs the function and moves the thread back.
// File descriptors made inside (sockets, AF_XDP sockets, bpf links) keep
// their namespace and can be used from any thread afterwards.
package netns

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Dir is where iproute2 keeps named namespaces (`ip netns add`).
const Dir = "/var/run/netns"

// Path returns the bind-mount path of the named namespace.
func Path(name string) string { return filepath.Join(Dir, name) }

// Exists reports whether the named namespace exists.
func Exists(name string) bool {
	var st unix.Stat_t
	return unix.Stat(Path(name), &st) == nil
}

// Do runs f on an OS thread that has entered the named namespace. An empty
// name runs f in the caller's namespace. If the thread cannot be moved back,
// it is left locked so that the runtime retires it when the goroutine ends.
func Do(name string, f func() error) error {
	if name == "" {
		return f()
	}
	target, err := os.Open(Path(name))
	if err != nil {
		return fmt.Errorf("network namespace %q: %w", name, err)
	}
	defer target.Close()

	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- fmt.Errorf("open current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %q: %w", name, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Keep the thread locked: it dies with this goroutine instead
			// of running other goroutines in the wrong namespace.
			errc <- ferr
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
