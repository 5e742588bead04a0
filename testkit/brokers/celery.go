package brokers

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// sendScript sends tasks with the real Celery client: argv is broker URL,
// queue, task name, count, priority (-1: none) and the JSON args.
const sendScript = `
import json, sys
from celery import Celery
url, queue, task, n, prio, args = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), json.loads(sys.argv[6])
app = Celery(broker=url)
opts = {} if prio < 0 else {"priority": prio}
for _ in range(n):
    app.send_task(task, args=args, queue=queue, **opts)
`

// SendTasks sends n tasks named task with args to queue through the real
// Celery client, with a message priority unless priority < 0.
func SendTasks(brokerURL, queue, task string, n, priority int, args ...any) error {
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
	out, err := exec.Command(Python, "-c", sendScript, brokerURL, queue, task, strconv.Itoa(n), strconv.Itoa(priority), string(a)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("celery send_task: %w: %s", err, out)
	}
	return nil
}

// tasksModule is the app a test worker runs: acks_late with prefetch, the
// setting under which a busy queue's list looks empty.
const tasksModule = `
import os, time
from celery import Celery
app = Celery("tasks", broker=os.environ["SETPOINT_BROKER_URL"])
app.conf.task_acks_late = True
app.conf.worker_prefetch_multiplier = int(os.environ.get("SETPOINT_PREFETCH", "4"))

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
	if _, err := os.Stat(Python); err != nil {
		return nil, fmt.Errorf("%s: %w", Python, ErrMissing)
	}
	if err := os.WriteFile(filepath.Join(dir, "tasks.py"), []byte(tasksModule), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "worker-"+queue+".log")
	p, err := start(Python, []string{"-m", "celery", "--workdir", dir, "-A", "tasks", "worker", "-Q", queue, "--pool", "solo",
		"--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"},
		[]string{"SETPOINT_BROKER_URL=" + brokerURL, "SETPOINT_PREFETCH=" + strconv.Itoa(prefetch), "PYTHONPATH=" + dir}, logPath)
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

// Stop kills the worker at once (a test need not wait for its tasks).
func (w *Worker) Stop() { w.p.kill() }
