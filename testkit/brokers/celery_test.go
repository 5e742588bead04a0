package brokers

import (
	"os/exec"
	"strings"
	"testing"
)

// closeScript leaves a Redis channel's BRPOP pending (drain_events times
// out locally first), publishes one message, which that BRPOP takes, and
// closes the connection; it prints where the message is: "queued" (given
// back), "delivered" or "lost".
const closeScript = `
import socket, sys, time, redis
from kombu import Connection, Queue
url = sys.argv[1]
r = redis.Redis.from_url(url)
r.delete("closing")
got = []
with Connection(url) as c:
    with c.Consumer(Queue("closing", routing_key="closing"), callbacks=[lambda body, m: got.append(body)], accept=["json"]):
        try:
            c.drain_events(timeout=0.2)
        except socket.timeout:
            pass
        with Connection(url) as p:
            p.Producer().publish({"n": 1}, routing_key="closing", serializer="json")
        # The BRPOP takes it now; its reply waits unread in the socket.
        deadline = time.time() + 5
        while r.llen("closing") and time.time() < deadline:
            time.sleep(0.01)
print("delivered" if got else "queued" if r.llen("closing") else "lost")
`

// TestKombuShutdownFix: with KombuShutdownFix, a message taken by the
// BRPOP of a closing channel goes back to the queue. Without it, kombu
// before 5.3 loses it (logged, not asserted: a fixed kombu keeps it too).
func TestKombuShutdownFix(t *testing.T) {
	r, err := StartRedis(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	run := func(prelude string) string {
		out, err := exec.Command(Python, "-c", prelude+closeScript, r.URL).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	version, _ := exec.Command(Python, "-c", "import kombu; print(kombu.__version__)").Output()
	t.Logf("without the fix, kombu %s: the message is %s", strings.TrimSpace(string(version)), run(""))
	if got := run(KombuShutdownFix); got != "queued" {
		t.Errorf("with the fix the message is %s, want queued", got)
	}
}
