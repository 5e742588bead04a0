package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/setpoint-dev/setpoint/testkit"
)

var setpointBin string

func TestMain(m *testing.M) {
	var err error
	if setpointBin, err = testkit.SetpointBinary(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(testkit.Run(m))
}

// command is a running setpoint subprocess whose output is collected.
type command struct {
	cmd    *exec.Cmd
	mu     sync.Mutex // guards out
	out    bytes.Buffer
	lines  chan string
	exited chan error
}

func startSetpoint(t *testing.T, args ...string) *command {
	t.Helper()
	return startCommand(t, setpointBin, args...)
}

// startCommand runs a program (setpoint, or setpoint behind a wrapper such
// as setpriv) and collects its output.
func startCommand(t *testing.T, name string, args ...string) *command {
	t.Helper()
	cmd := exec.Command(name, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	c := &command{cmd: cmd, lines: make(chan string, 1000), exited: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start setpoint: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			c.mu.Lock()
			c.out.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
			select {
			case c.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		c.exited <- err
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("setpoint output:\n%s", c.output())
		}
	})
	return c
}

func (c *command) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// waitLine returns the first output line that contains substr.
func (c *command) waitLine(t *testing.T, substr string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l := <-c.lines:
			if strings.Contains(l, substr) {
				return l
			}
		case err := <-c.exited:
			t.Fatalf("setpoint exited (%v) before printing %q", err, substr)
		case <-deadline:
			t.Fatalf("setpoint did not print %q within %s", substr, timeout)
		}
	}
}

// waitFailure waits for the command to exit with an error, having
// printed want.
func (c *command) waitFailure(t *testing.T, want string) {
	t.Helper()
	select {
	case err := <-c.exited:
		if err == nil {
			t.Fatalf("setpoint exited 0; want a failure saying %q", want)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("setpoint kept running; want a failure saying %q", want)
	}
	testkit.Eventually(t, 5*time.Second, func() error {
		if out := c.output(); !strings.Contains(out, want) {
			return fmt.Errorf("output does not say %q: %q", want, out)
		}
		return nil
	})
}

// stop sends sig and waits for a clean exit.
func (c *command) stop(t *testing.T, sig os.Signal, timeout time.Duration) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal: %v", err)
	}
	select {
	case err := <-c.exited:
		if err != nil {
			t.Fatalf("setpoint exited with %v after %v", err, sig)
		}
	case <-time.After(timeout):
		t.Fatalf("setpoint still running %s after %v", timeout, sig)
	}
}

// processesMentioning lists the processes other than setpoint itself whose
// command line contains s: every control plane component has its state
// directory in its arguments.
func processesMentioning(s string) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) && !bytes.HasPrefix(b, []byte(setpointBin+"\x00")) {
			pids = append(pids, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return pids
}

func eventually(t *testing.T, cond func() error) {
	t.Helper()
	testkit.Eventually(t, 60*time.Second, cond)
}
