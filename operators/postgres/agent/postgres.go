package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// server runs the PostgreSQL binaries as the postgres user.
type server struct {
	bin     string // directory of initdb, postgres, pg_ctl, ...
	data    string
	run     string // unix socket directory
	uid     uint32
	gid     uint32
	env     []string
	logTo   *os.File
	cmd     *exec.Cmd
	pid     atomic.Int64 // of the postmaster, for the fence (no lock)
	exited  chan struct{}
	exitErr error
}

// findBinDir finds PostgreSQL's binaries: $PGBIN, the newest
// /usr/lib/postgresql/<major>/bin (Debian's and the official images'
// layout), or the directory pg_ctl is in on the PATH.
func findBinDir() (string, error) {
	if d := os.Getenv("PGBIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d, nil
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(real), nil
		}
	}
	return "", errors.New("no PostgreSQL binaries: set PGBIN, or install them (Debian: postgresql)")
}

func major(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func newServer(data, run string, logTo *os.File) (*server, error) {
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("postgres refuses to run as root and needs a user of its own: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &server{bin: bin, data: data, run: run, uid: uint32(uid), gid: uint32(gid), logTo: logTo,
		env: []string{"HOME=" + run, "PGPASSFILE=" + filepath.Join(run, "pgpass"), "LANG=C.UTF-8", "PATH=" + bin + ":/usr/bin:/bin"}}, nil
}

// command is a PostgreSQL program run as the postgres user.
func (s *server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	c.Env = s.env
	c.Dir = s.run
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: s.uid, Gid: s.gid}}
	return c
}

// tool runs a program to its end; its output is kept for the error.
func (s *server) tool(ctx context.Context, name string, args ...string) error {
	_, err := s.toolOutput(ctx, name, args...)
	return err
}

// toolOutput is tool, with the last lines of the output.
func (s *server) toolOutput(ctx context.Context, name string, args ...string) (string, error) {
	out, err := s.command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %w: %s", name, err, lastLines(string(out), 5))
	}
	return lastLines(string(out), 3), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " | ")
}

// own gives dir to the postgres user (volumes are made by root).
func (s *server) own(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return err
	}
	if err := os.Chown(dir, int(s.uid), int(s.gid)); err != nil {
		return err
	}
	return os.Chmod(dir, mode)
}

func (s *server) hasData() bool {
	_, err := os.Stat(filepath.Join(s.data, "PG_VERSION"))
	return err == nil
}

func (s *server) standby() bool {
	_, err := os.Stat(filepath.Join(s.data, "standby.signal"))
	return err == nil
}

func (s *server) setStandby(on bool) error {
	p := filepath.Join(s.data, "standby.signal")
	if !on {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
		return nil
	}
	return s.writeFile(p, "", 0o600)
}

// writeFile writes a file the postgres user owns.
func (s *server) writeFile(path, content string, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), mode); err != nil {
		return err
	}
	if err := os.Chown(tmp, int(s.uid), int(s.gid)); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// initdb makes a new data directory with data checksums (pg_rewind needs
// them or wal_log_hints).
func (s *server) initdb(ctx context.Context) error {
	if err := s.own(s.data, 0o700); err != nil {
		return err
	}
	return s.tool(ctx, "initdb", "-D", s.data, "--data-checksums", "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C")
}

// basebackup clones the primary into an empty data directory.
func (s *server) basebackup(ctx context.Context, host string) error {
	if err := s.wipe(); err != nil {
		return err
	}
	return s.tool(ctx, "pg_basebackup", "-D", s.data, "-h", host, "-p", "5432", "-U", replicationUser,
		"-X", "stream", "-c", "fast", "-w")
}

// wipe empties the data directory (its mount point stays).
func (s *server) wipe() error {
	entries, err := os.ReadDir(s.data)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.data, e.Name())); err != nil {
			return err
		}
	}
	return s.own(s.data, 0o700)
}

// rewind brings a former primary onto the current primary's timeline.
func (s *server) rewind(ctx context.Context, host string) (string, error) {
	if s.running() {
		return "", errors.New("postgres is running")
	}
	s.clearStale()
	src := fmt.Sprintf("host=%s port=5432 user=postgres dbname=postgres connect_timeout=5", host)
	return s.toolOutput(ctx, "pg_rewind", "-D", s.data, "--source-server="+src, "--progress")
}

// clearStale removes what a postgres killed with its agent left: the
// agent is the only one that starts postgres in this pod, and its child
// is gone. A stale postmaster.pid whose PID a new process of the pod
// happens to hold makes postgres refuse to start (pg_rewind's
// single-user recovery too: a killed primary was then cloned again
// instead of rewound).
func (s *server) clearStale() {
	for _, f := range []string{filepath.Join(s.data, "postmaster.pid"), filepath.Join(s.run, ".s.PGSQL.5432.lock"), filepath.Join(s.run, ".s.PGSQL.5432")} {
		_ = os.Remove(f)
	}
}

// start runs postgres as a child; exited is closed when it ends.
func (s *server) start() error {
	if s.cmd != nil {
		return errors.New("postgres is already running")
	}
	s.clearStale()
	c := s.command(context.Background(), "postgres", "-D", s.data)
	c.Stdout, c.Stderr = s.logTo, s.logTo
	// Its own process group, so a signal to the agent's does not reach it
	// before the agent decides how to stop it.
	c.SysProcAttr.Setpgid = true
	c.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	if err := c.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd, s.exited = c, make(chan struct{})
	s.pid.Store(int64(c.Process.Pid))
	go func(c *exec.Cmd, done chan struct{}) {
		s.exitErr = c.Wait()
		s.pid.CompareAndSwap(int64(c.Process.Pid), 0)
		close(done)
	}(c, s.exited)
	return nil
}

func (s *server) running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		s.cmd = nil
		return false
	default:
		return true
	}
}

// Stop modes: fast rolls back open transactions and disconnects; immediate
// quits at once (crash recovery at the next start). Smart, which waits for
// sessions to end, is never used: an old primary must stop taking commits
// now.
const (
	stopFast      = syscall.SIGINT
	stopImmediate = syscall.SIGQUIT
)

// signal sends a stop mode to the postmaster without waiting (the fence,
// from the Lease's goroutine).
func (s *server) signal(mode syscall.Signal) {
	if pid := s.pid.Load(); pid > 0 {
		_ = syscall.Kill(int(pid), mode)
	}
}

// stop ends postgres with mode and waits up to timeout before killing it.
func (s *server) stop(mode syscall.Signal, timeout time.Duration) {
	if !s.running() {
		return
	}
	_ = s.cmd.Process.Signal(mode)
	select {
	case <-s.exited:
	case <-time.After(timeout):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.exited
	}
	s.cmd = nil
}
