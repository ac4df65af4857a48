package core

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"gvisor.dev/gvisor/pkg/refs"

	"github.com/xstack/xstack/stack"
)

// LeakCheckEnv names the environment variable that turns on gVisor's
// reference leak checker: with XSTACK_LEAK_CHECK=1 every reference-counted
// gVisor object (packet buffers, buffer chunks, TCP segments, address
// states) is recorded while it lives, and when the process's last stack has
// been closed one line goes to stderr:
//
//	xstack: leak check: clean
//	xstack: leak check: N objects leaked
//
// followed, in the second case, by gVisor's description of each object.
// It costs a global lock per object, so it is for tests and debugging.
const LeakCheckEnv = "XSTACK_LEAK_CHECK"

// The leak checker must be on before the first object is made: an object
// made before would be unknown to it when it is freed (gVisor panics on
// that), and an init function runs before any stack can exist.
func init() {
	if os.Getenv(LeakCheckEnv) == "1" {
		// Panic mode makes the check hand its report to CheckLeaks (which
		// recovers it) instead of writing it to gVisor's log.
		refs.SetLeakMode(refs.LeaksPanic)
	}
}

// LeakCheckEnabled reports whether gVisor's leak checker is on.
func LeakCheckEnabled() bool { return refs.GetLeakMode() != refs.NoLeakChecking }

// leakCheckMu serialises CheckLeaks: gVisor's check is not meant to run
// twice at once.
var leakCheckMu sync.Mutex

// CheckLeaks runs gVisor's leak check now and returns how many
// reference-counted objects are alive and gVisor's report on them (one line
// per object, giving its type and reference count). Every stack must have
// been closed (Stack.Close waits for gVisor's goroutines) before the result
// means a leak: a live stack holds objects of its own (addresses, queued
// segments). Without the leak checker it returns 0 and "".
func CheckLeaks() (n int, report string) {
	if !LeakCheckEnabled() {
		return 0, ""
	}
	leakCheckMu.Lock()
	defer leakCheckMu.Unlock()
	defer func() {
		if v := recover(); v != nil {
			msg, ok := v.(string)
			if !ok || !strings.HasPrefix(msg, "Leak checking detected") {
				panic(v)
			}
			// The first line is gVisor's heading; each further line is
			// one object.
			_, objs, _ := strings.Cut(msg, "\n")
			objs = strings.TrimRight(objs, "\n")
			if objs != "" {
				n = strings.Count(objs, "\n") + 1
			}
			report = objs
		}
	}()
	refs.DoRepeatedLeakCheck()
	return 0, ""
}

// openStacks are the lcore stacks of this process that have not been
// closed yet, recorded while the leak checker is on.
var openStacks = struct {
	sync.Mutex
	m map[*stack.Stack]bool
}{m: map[*stack.Stack]bool{}}

// leakCheckOut is where the leak check's result goes.
var leakCheckOut io.Writer = os.Stderr

// leakCheckStackOpened records a new lcore stack.
func leakCheckStackOpened(st *stack.Stack) {
	if !LeakCheckEnabled() {
		return
	}
	openStacks.Lock()
	openStacks.m[st] = true
	openStacks.Unlock()
}

// leakCheckStackClosed records that an lcore stack has been closed; when it
// was the process's last one, it runs the leak check and prints the result.
// Process mode has one stack; in thread mode the last lcore's Close runs it.
func leakCheckStackClosed(st *stack.Stack) {
	if !LeakCheckEnabled() {
		return
	}
	openStacks.Lock()
	last := openStacks.m[st] && len(openStacks.m) == 1
	delete(openStacks.m, st)
	openStacks.Unlock()
	if last {
		printLeakCheck(leakCheckOut)
	}
}

// printLeakCheck runs the leak check and writes its result to w.
func printLeakCheck(w io.Writer) {
	n, report := CheckLeaks()
	if n == 0 {
		fmt.Fprintln(w, "xstack: leak check: clean")
		return
	}
	fmt.Fprintf(w, "xstack: leak check: %d objects leaked\n%s\n", n, report)
}
