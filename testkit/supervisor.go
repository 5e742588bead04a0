package testkit

import (
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Supervisor keeps n processes running, starting each again the moment
// it dies (as a kubelet restarts a container, without the back-off), and
// remembers every process that died. The chaos tests SIGKILL its
// processes at random.
type Supervisor struct {
	mu      sync.Mutex
	current []*os.Process
	dead    map[int]bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

// Supervise starts n processes, process i made by command(i) each time it
// is started. Each one's output goes to logDir/replica-<i>.log, whose end
// a failed test prints. The processes are killed when the test ends.
func Supervise(t testing.TB, n int, command func(i int) *exec.Cmd, logDir string) *Supervisor {
	s := &Supervisor{current: make([]*os.Process, n), dead: map[int]bool{}, stop: make(chan struct{})}
	for i := range n {
		s.wg.Go(func() { s.keep(t, i, command, logDir) })
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i := range n {
				b, _ := os.ReadFile(fmt.Sprintf("%s/replica-%d.log", logDir, i))
				t.Logf("replica %d's output:\n%s", i, b[max(0, len(b)-4096):])
			}
		}
		close(s.stop)
		s.mu.Lock()
		for _, p := range s.current {
			if p != nil {
				_ = p.Kill()
			}
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// keep runs process i again each time it ends, until the test ends.
func (s *Supervisor) keep(t testing.TB, i int, command func(int) *exec.Cmd, logDir string) {
	for {
		cmd := command(i)
		f, err := os.OpenFile(fmt.Sprintf("%s/replica-%d.log", logDir, i), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Errorf("replica %d's log: %v", i, err)
			return
		}
		cmd.Stdout, cmd.Stderr = f, f
		fmt.Fprintf(f, "=== started %s\n", time.Now().Format("15:04:05.000"))
		if err := cmd.Start(); err != nil {
			f.Close()
			t.Errorf("start replica %d: %v", i, err)
			return
		}
		s.mu.Lock()
		s.current[i] = cmd.Process
		s.mu.Unlock()
		_ = cmd.Wait()
		f.Close()
		s.mu.Lock()
		s.dead[cmd.Process.Pid] = true
		s.mu.Unlock()
		select {
		case <-s.stop:
			return
		default:
		}
	}
}

// Kill SIGKILLs process i's current incarnation.
func (s *Supervisor) Kill(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.current[i]; p != nil {
		_ = p.Signal(syscall.SIGKILL)
	}
}

// Died reports whether the process pid was started here and has ended.
func (s *Supervisor) Died(pid int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead[pid]
}
