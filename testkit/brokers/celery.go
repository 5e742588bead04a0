package brokers

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sendScript sends tasks with the real Celery client: argv is broker URL,
// queue, task name, count, priority (-1: none) and the JSON args.
const sendScript = `
import json, sys
from celery import Celery
url, queue, task, n, prio, args, transport = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), json.loads(sys.argv[6]), json.loads(sys.argv[7])
app = Celery(broker=url)
app.conf.broker_transport_options = transport
opts = {} if prio < 0 else {"priority": prio}
for _ in range(n):
    app.send_task(task, args=args, queue=queue, **opts)
`

// SendTasks sends n tasks named task with args to queue through the real
// Celery client, with a message priority unless priority < 0.
func SendTasks(brokerURL, queue, task string, n, priority int, args ...any) error {
	return SendTasksWith(nil, brokerURL, queue, task, n, priority, args...)
}

// SendTasksWith is SendTasks with kombu's broker_transport_options
// (global_keyprefix, unacked_key, ...).
func SendTasksWith(transport map[string]any, brokerURL, queue, task string, n, priority int, args ...any) error {
	if _, err := os.Stat(Python); err != nil {
		return fmt.Errorf("%s: %w", Python, ErrMissing)
	}
	if args == nil {
		args = []any{}
	}
	a, err := json.Marshal(args)
	if err != nil {
		return err
	}
	if transport == nil {
		transport = map[string]any{}
	}
	t, err := json.Marshal(transport)
	if err != nil {
		return err
	}
	out, err := exec.Command(Python, "-c", sendScript, brokerURL, queue, task, strconv.Itoa(n), strconv.Itoa(priority), string(a), string(t)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("celery send_task: %w: %s", err, out)
	}
	return nil
}

// KombuShutdownFix is Python that test apps run before they import
// Celery: kombu before 5.3 (Debian 12 ships 5.2.4) loses the message that
// a Redis channel's pending BRPOP takes while the channel closes, at a
// worker's shutdown; kombu 5.3 reads that reply in close(), which gives
// the message back to the queue (celery/kombu#1733). This is that change,
// for the kombu the tests have; the operator says which Celery it needs
// (condition ScaleDownSafe).
const KombuShutdownFix = `
import kombu as _kombu
if tuple(int(x) for x in _kombu.__version__.split(".")[:2]) < (5, 3):
    from kombu.transport import redis as _kredis
    _kredis_close = _kredis.Channel.close
    def _close_reading_brpop(self):
        if self._in_poll:
            try:
                self._brpop_read()
            except _kredis.Empty:
                pass
        _kredis_close(self)
    _kredis.Channel.close = _close_reading_brpop
`

// tasksModule is the app a test worker runs: acks_late with prefetch, the
// setting under which a busy queue's list looks empty.
var tasksModule = KombuShutdownFix + `
import json, os, time
from celery import Celery
app = Celery("tasks", broker=os.environ["SETPOINT_BROKER_URL"])
app.conf.task_acks_late = True
app.conf.worker_prefetch_multiplier = int(os.environ.get("SETPOINT_PREFETCH", "4"))
app.conf.broker_transport_options = json.loads(os.environ.get("SETPOINT_TRANSPORT", "{}"))

@app.task(name="tasks.sleep")
def sleep(seconds):
    time.sleep(seconds)
`

// Worker is a running Celery worker.
type Worker struct {
	p   *proc
	Log string
}

// StartWorker runs a Celery worker (solo pool, acks_late, prefetch
// multiplier prefetch) consuming queue, whose task "tasks.sleep" sleeps
// for its argument in seconds. It returns once the worker is consuming.
func StartWorker(dir, brokerURL, queue string, prefetch int) (*Worker, error) {
	return StartWorkerWith(dir, brokerURL, queue, WorkerOptions{Prefetch: prefetch})
}

// WorkerOptions tune StartWorkerWith.
type WorkerOptions struct {
	// Prefetch is the prefetch multiplier.
	Prefetch int
	// Heartbeat makes the worker send its heartbeat events (StartWorker's
	// workers are quiet), under Hostname when set.
	Heartbeat bool
	Hostname  string
	// Transport are kombu's broker_transport_options.
	Transport map[string]any
	// Pool is the execution pool ("solo" when empty), with Concurrency.
	Pool        string
	Concurrency int
}

// StartWorkerWith is StartWorker with options.
func StartWorkerWith(dir, brokerURL, queue string, o WorkerOptions) (*Worker, error) {
	if _, err := os.Stat(Python); err != nil {
		return nil, fmt.Errorf("%s: %w", Python, ErrMissing)
	}
	if err := os.WriteFile(filepath.Join(dir, "tasks.py"), []byte(tasksModule), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "worker-"+queue+".log")
	pool := o.Pool
	if pool == "" {
		pool = "solo"
	}
	args := []string{"-m", "celery", "--workdir", dir, "-A", "tasks", "worker", "-Q", queue, "--pool", pool,
		"--without-gossip", "--without-mingle", "--loglevel", "INFO", "--concurrency", strconv.Itoa(max(o.Concurrency, 1))}
	if !o.Heartbeat {
		args = append(args, "--without-heartbeat")
	}
	if o.Hostname != "" {
		args = append(args, "--hostname", o.Hostname)
	}
	transport, err := json.Marshal(o.Transport)
	if err != nil {
		return nil, err
	}
	if o.Transport == nil {
		transport = []byte("{}")
	}
	p, err := start(Python, args,
		[]string{"SETPOINT_BROKER_URL=" + brokerURL, "SETPOINT_PREFETCH=" + strconv.Itoa(o.Prefetch), "SETPOINT_TRANSPORT=" + string(transport), "PYTHONPATH=" + dir}, logPath)
	if err != nil {
		return nil, err
	}
	w := &Worker{p: p, Log: logPath}
	if err := p.waitFor(60*time.Second, func() error {
		data, _ := os.ReadFile(logPath)
		if !strings.Contains(string(data), " ready.") {
			return fmt.Errorf("worker not ready")
		}
		return nil
	}); err != nil {
		w.Stop()
		return nil, err
	}
	return w, nil
}

// Shutdown asks the worker for its warm shutdown (SIGTERM) and waits
// until it has exited.
func (w *Worker) Shutdown() {
	_ = syscall.Kill(w.p.cmd.Process.Pid, syscall.SIGTERM)
	<-w.p.done
}

// Stop kills the worker at once (a test need not wait for its tasks).
func (w *Worker) Stop() { w.p.kill() }

// CeleryVersion is the version of the Celery the test workers run.
func CeleryVersion() (string, error) {
	out, err := exec.Command(Python, "-c", "import celery; print(celery.__version__)").Output()
	if err != nil {
		return "", fmt.Errorf("celery version: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
