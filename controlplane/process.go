package controlplane

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// process is one child of the control plane: its command, its log file and
// the knowledge of whether its exit was asked for.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	logFile *os.File

	// env is what the process got beside os.Environ, and ready the check
	// it passed at start (nil if none): what Restart needs to do it again.
	env   []string
	ready func() error

	done chan struct{} // closed when the process has exited
	mu   sync.Mutex
	err  error // exit status, valid after done
	stop bool  // set before we signal it, so the exit is not a failure
}

// startProcess runs bin with args, logging to logDir/name.log. The child
// gets its own process group so Stop can signal it and anything it forks,
// and a parent-death signal so that a killed `setpoint dev` leaves no orphan.
func startProcess(name, bin string, args []string, env []string, logDir string) (*process, error) {
	return startProcessAttr(name, bin, args, env, logDir, &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL})
}

// startProcessAttr is startProcess with the child's attributes given (a
// user namespace of its own, say); they must keep Setpgid and Pdeathsig.
func startProcessAttr(name, bin string, args []string, env []string, logDir string, attr *syscall.SysProcAttr) (*process, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log for %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = attr
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, logFile: f, env: env, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the child's process id (and its process group id).
func (p *process) Pid() int { return p.cmd.Process.Pid }

// exitError describes an exit that nobody asked for, with the end of the log
// so the reason is visible where the failure is reported.
func (p *process) exitError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Errorf("%s exited unexpectedly (%v); last lines of %s:\n%s", p.name, p.err, p.logPath, tail(p.logPath, 20))
}

func (p *process) stopping() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stop
}

// terminate asks the process group to exit, then kills it after grace.
func (p *process) terminate(grace time.Duration) error {
	p.mu.Lock()
	p.stop = true
	p.mu.Unlock()
	select {
	case <-p.done:
		return nil
	default:
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, pgid)
	}
}

// tail returns the last n lines of a file, read from at most its last 64 KiB.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	const window = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > window {
		_, _ = f.Seek(-window, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
