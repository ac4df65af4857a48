package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary plays both parts. With roleEnv=launch it is launch (its
// main); launch then starts the test binary again, once per lcore, with
// one of the child modes below as its first argument. Children inherit the
// environment, so the first argument, not the variable, makes a child.
const roleEnv = "XSTACK_LAUNCH_TEST_ROLE"

const (
	childCount = "child:count" // counts SIGINTs until SIGUSR1, then reports and exits 0
	childFail  = "child:fail"  // exits 1 at once
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && strings.HasPrefix(os.Args[1], "child:") {
		os.Exit(child(os.Args[1], os.Args[2:]))
	}
	if os.Getenv(roleEnv) == "launch" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child is the program launch starts: args are launch's -c, -p and -t.
func child(mode string, args []string) int {
	p := "?"
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "-p" {
			p = args[i+1]
		}
	}
	if mode == childFail {
		fmt.Printf("child %s failing\n", p)
		return 1
	}
	sig := make(chan os.Signal, 8)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGUSR1)
	fmt.Printf("child %s ready %d\n", p, os.Getpid())
	n := 0
	for s := range sig {
		if s == syscall.SIGUSR1 {
			// Signals of one sender arrive in order, and launch forwards
			// in the order it received: every SIGINT launch forwarded
			// before this SIGUSR1 has been counted.
			fmt.Printf("child %s sigints %d\n", p, n)
			return 0
		}
		n++
		fmt.Printf("child %s sigint %d\n", p, n)
	}
	return 2
}

// launchCmd returns a command that runs launch over a two-lcore process
// mode config with the test binary, in the given child mode, as its program.
func launchCmd(t *testing.T, mode string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "config.ini")
	ini := "[xstack]\nlcore_mask=3\nmode=process\n[port0]\nifname=xs0\naddr=198.18.0.1\nnetmask=255.255.0.0\n"
	if err := os.WriteFile(conf, []byte(ini), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-c", conf, "--", self, mode)
	cmd.Env = append(os.Environ(), roleEnv+"=launch")
	return cmd
}

// A child that fails makes launch report it and exit 1; under -race the
// failure flag its goroutines set is read without a race.
func TestChildFails(t *testing.T) {
	cmd := launchCmd(t, childFail)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("launch with failing children: %v, want exit status 1\n%s", err, out.String())
	}
	for _, want := range []string{"launch: proc-id 0 (pid", "launch: proc-id 1 (pid"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("launch's output has no %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "DATA RACE") {
		t.Errorf("race detected:\n%s", out.String())
	}
}

// openPty opens a pseudo-terminal pair: the master, and the slave for the
// program under test.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(int(n)), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open pty slave: %v", err)
	}
	return m, s
}

var childLine = regexp.MustCompile(`child (\d+) (ready|sigints|sigint) (\d+)`)

// A Ctrl-C typed at the terminal launch runs in reaches each child exactly
// once: a second SIGINT would make a stack cut its FIN wait short
// (core.Shutdown).
func TestCtrlCReachesEachChildOnce(t *testing.T) {
	master, slave := openPty(t)
	cmd := launchCmd(t, childCount)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	// A session of its own with the pty as its controlling terminal, as a
	// shell would run it in the foreground: the terminal's ^C goes to
	// launch's process group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
	})

	type event struct{ proc, what, n string }
	events := make(chan event, 64)
	var out bytes.Buffer // the terminal's output; read only after lines is closed
	lines := make(chan struct{})
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(master)
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if m := childLine.FindStringSubmatch(sc.Text()); m != nil {
				events <- event{m[1], m[2], m[3]}
			}
		}
	}()
	// waitAll waits until both children have reported what, and returns
	// the number each gave with it.
	waitAll := func(what string) map[string]string {
		t.Helper()
		got := map[string]string{}
		timeout := time.After(time.Minute)
		for len(got) < 2 {
			select {
			case e := <-events:
				if e.what == what {
					got[e.proc] = e.n
				}
			case <-timeout:
				t.Fatalf("after a minute, %d of 2 children said %q: %v", len(got), what, got)
			}
		}
		return got
	}

	for _, pid := range waitAll("ready") {
		// Should the test stop early, no child outlives it.
		pid, _ := strconv.Atoi(pid)
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	}
	if _, err := master.Write([]byte{0x03}); err != nil { // the terminal's VINTR: ^C
		t.Fatal(err)
	}
	waitAll("sigint")
	// Every SIGINT that was coming has been sent: the terminal's went out
	// before the first one was seen, and launch forwards in order, so its
	// SIGINT reaches a child before the SIGUSR1 sent to launch after it.
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	counts := waitAll("sigints")
	<-exited
	if waitErr != nil {
		t.Errorf("launch: %v", waitErr)
	}
	<-lines // the master reads EIO once launch and its children have closed the slave
	for p, n := range counts {
		if n != "1" {
			t.Errorf("child %s got %s SIGINTs from one ^C, want 1", p, n)
		}
	}
	if strings.Contains(out.String(), "DATA RACE") || t.Failed() {
		t.Errorf("terminal output:\n%s", out.String())
	}
}
