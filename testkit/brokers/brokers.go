// Package brokers starts real message brokers for tests — redis-server and
// rabbitmq-server from Debian's packages (`make deps` installs them) — on
// free loopback ports in a directory of the test's, and drives the real
// Celery client (Debian's /usr/bin/python3 with python3-celery) against
// them, so queue names and encodings are Celery's own.
package brokers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/setpoint-dev/setpoint/controlplane"
)

// ErrMissing is returned when a broker or Celery is not installed.
var ErrMissing = errors.New("not installed: run `make deps`")

// Python is Debian's interpreter, which has python3-celery (the machine's
// default python3 may be another install without it).
const Python = "/usr/bin/python3"

func find(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/lib/rabbitmq/bin"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, ErrMissing)
}

// proc is a server or worker started by this package.
type proc struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when it has exited
}

// start runs bin in its own process group, in the directory of logPath
// and logging there, with a parent-death signal so a killed test leaves
// nothing behind.
func start(bin string, args, env []string, logPath string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = filepath.Dir(logPath) // where crash dumps and the like land
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &proc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.done) }()
	return p, nil
}

// waitFor polls ready until it succeeds, the deadline passes or the
// process exits; the error quotes the end of the log.
func (p *proc) waitFor(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = ready(); err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v); log:\n%s", filepath.Base(p.cmd.Path), err, tail(p.log, 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready after %s (%v); log:\n%s", filepath.Base(p.cmd.Path), timeout, err, tail(p.log, 20))
}

// kill ends the process group at once.
func (p *proc) kill() { _ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL) }

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Redis is a running redis-server.
type Redis struct {
	// URL is its address as Celery's broker_url, database 0.
	URL string
	p   *proc
}

// StartRedis starts redis-server on a free loopback port, keeping nothing
// on disk but its log in dir.
func StartRedis(dir string) (*Redis, error) {
	bin, err := find("redis-server")
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(controlplane.FreePort())
	logPath := filepath.Join(dir, "redis.log")
	p, err := start(bin, []string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir}, nil, logPath)
	if err != nil {
		return nil, err
	}
	r := &Redis{URL: "redis://127.0.0.1:" + port + "/0", p: p}
	if err := p.waitFor(20*time.Second, func() error { return redisPing("127.0.0.1:" + port) }); err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Stop ends the server.
func (r *Redis) Stop() { r.p.kill() }

// RabbitMQ is a running rabbitmq-server node of its own.
type RabbitMQ struct {
	// URL is its AMQP address as Celery's broker_url (user guest).
	URL string
	// ManagementURL is its management API, with credentials.
	ManagementURL string
	node          string
	env           []string
	p             *proc
	epmdPort      string
	dir           string
}

// StartRabbitMQ starts a private rabbitmq-server node, with the
// management plugin, on free loopback ports and its state in a directory
// of its own that Stop removes. Started as root, the server runs as the
// rabbitmq user, so the directory is made under the system's temporary
// directory (which that user can reach) and given to it.
func StartRabbitMQ() (*RabbitMQ, error) {
	bin, err := find("rabbitmq-server")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "setpoint-rabbitmq-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	port, dist, epmd, mgmt := controlplane.FreePort(), controlplane.FreePort(), controlplane.FreePort(), controlplane.FreePort()
	node := fmt.Sprintf("setpoint%d@localhost", port)
	conf := fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\nmanagement.tcp.port = %d\nmanagement.tcp.ip = 127.0.0.1\n", port, mgmt)
	files := map[string]string{"rabbitmq.conf": conf, "enabled_plugins": "[rabbitmq_management].\n"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"mnesia", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if os.Getuid() == 0 {
		if err := giveTo(dir, "rabbitmq"); err != nil {
			return nil, err
		}
	}
	env := []string{
		"RABBITMQ_NODENAME=" + node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT=" + strconv.Itoa(port),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(dist),
		"ERL_EPMD_PORT=" + strconv.Itoa(epmd),
		"ERL_EPMD_ADDRESS=127.0.0.1",
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"),
		"RABBITMQ_FEATURE_FLAGS_FILE=" + filepath.Join(dir, "feature_flags"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(dir, "enabled_plugins"),
		"ERL_CRASH_DUMP=" + filepath.Join(dir, "erl_crash.dump"),
	}
	logPath := filepath.Join(dir, "rabbitmq-server.log")
	p, err := start(bin, nil, env, logPath)
	if err != nil {
		return nil, err
	}
	r := &RabbitMQ{dir: dir, p: p,
		URL:           fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d//", port),
		ManagementURL: fmt.Sprintf("http://guest:guest@127.0.0.1:%d", mgmt),
		node:          node, env: env, epmdPort: strconv.Itoa(epmd),
	}
	// The management API answers last, once the node has booted.
	overview := fmt.Sprintf("http://127.0.0.1:%d/api/overview", mgmt)
	if err := p.waitFor(90*time.Second, func() error {
		req, _ := http.NewRequest(http.MethodGet, overview, nil)
		req.SetBasicAuth("guest", "guest")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("management API: %s", resp.Status)
		}
		return nil
	}); err != nil {
		r.Stop()
		return nil, err
	}
	return r, nil
}

// giveTo makes name the owner of dir and what is in it.
func giveTo(dir, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("user %s: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	})
}

// Stop stops the node (the launcher's process group does not reach the
// Erlang VM it switched user for) and its epmd.
func (r *RabbitMQ) Stop() {
	ctl, err := find("rabbitmqctl")
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c := exec.CommandContext(ctx, ctl, "-n", r.node, "stop")
		c.Env = append(os.Environ(), r.env...)
		_ = c.Run()
	}
	r.p.kill()
	if epmd, err := find("epmd"); err == nil {
		_ = exec.Command(epmd, "-port", r.epmdPort, "-kill").Run()
	}
	_ = os.RemoveAll(r.dir)
}
