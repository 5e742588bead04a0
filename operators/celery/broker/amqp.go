package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

type amqpProber struct {
	u    *url.URL
	mgmt *url.URL // nil: no management API
	http *http.Client
	*heartbeats

	mu   sync.Mutex
	conn *amqp.Connection
	// sock is conn's TCP connection, closed to end calls that outlive
	// their deadline: amqp091 calls take no context.
	sock net.Conn
}

func openAMQP(u *url.URL, management string) (*amqpProber, error) {
	p := &amqpProber{u: u, http: &http.Client{Timeout: 5 * time.Second}}
	if u.Scheme == "pyamqp" {
		c := *u
		c.Scheme = "amqp"
		p.u = &c
	}
	if management != "" {
		m, err := url.Parse(management)
		if err != nil {
			return nil, fmt.Errorf("management URL is not a URL")
		}
		p.mgmt = m
	}
	p.heartbeats = newHeartbeats(p.listen)
	return p, nil
}

func (p *amqpProber) Close() error {
	p.heartbeats.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		p.sock.Close() // a hung broker cannot hold Close up
		p.conn = nil
	}
	return nil
}

// connection returns the open connection, dialling when there is none or
// it broke: one connection serves every probe of this broker.
func (p *amqpProber) connection() (*amqp.Connection, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil && !p.conn.IsClosed() {
		return p.conn, nil
	}
	var sock net.Conn
	dial := amqp.DefaultDial(5 * time.Second)
	conn, err := amqp.DialConfig(p.u.String(), amqp.Config{Dial: func(network, addr string) (net.Conn, error) {
		c, err := dial(network, addr)
		sock = c
		return c, err
	}})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redacted(p.u), redactErr(err, p.u))
	}
	p.conn, p.sock = conn, sock
	return conn, nil
}

// drop closes conn's socket, if conn is still the current connection.
func (p *amqpProber) drop(conn *amqp.Connection) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn == conn && conn != nil {
		p.sock.Close()
		p.conn = nil
	}
}

// Backlog declares each queue passively on its own channel: a queue that
// does not exist closes the channel (404), which means no backlog. The
// AMQP calls run under ctx's deadline: past it the connection is closed
// and the call fails, rather than hanging on a broker that stopped
// answering.
func (p *amqpProber) Backlog(ctx context.Context, queues []string) (map[string]Backlog, error) {
	conn, err := p.connection()
	if err != nil {
		return nil, err
	}
	type result struct {
		out map[string]Backlog
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := p.readyAll(conn, queues)
		done <- result{out, err}
	}()
	var out map[string]Backlog
	select {
	case r := <-done:
		if r.err != nil {
			return nil, r.err
		}
		out = r.out
	case <-ctx.Done():
		p.drop(conn)
		return nil, fmt.Errorf("read backlog from %s: %w", redacted(p.u), ctx.Err())
	}
	if p.mgmt == nil {
		return out, nil
	}
	for _, q := range queues {
		b := out[q]
		if b.Err != nil {
			continue
		}
		unacked, err := p.unacked(ctx, q)
		if err != nil {
			// Without the count the queue could look idle while workers
			// hold its messages: the pool keeps its count.
			b.Err = err
		}
		b.Unacked, b.UnackedKnown = unacked, err == nil
		out[q] = b
	}
	return out, nil
}

// readyAll reads every queue's ready count; an error of one queue (its
// channel refused) is that queue's, a closed connection everyone's.
func (p *amqpProber) readyAll(conn *amqp.Connection, queues []string) (map[string]Backlog, error) {
	out := make(map[string]Backlog, len(queues))
	for _, q := range queues {
		ready, err := p.ready(conn, q)
		if err != nil && conn.IsClosed() {
			return nil, err
		}
		out[q] = Backlog{Ready: ready, Err: err}
	}
	return out, nil
}

func (p *amqpProber) ready(conn *amqp.Connection, q string) (int64, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("open channel on %s: %w", redacted(p.u), redactErr(err, p.u))
	}
	defer ch.Close()
	info, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
	var amqpErr *amqp.Error
	switch {
	case errors.As(err, &amqpErr) && amqpErr.Code == amqp.NotFound:
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("queue %s: declare on %s: %w", q, redacted(p.u), redactErr(err, p.u))
	}
	return int64(info.Messages), nil
}

// unacked reads messages_unacknowledged of queue q in the broker URL's
// vhost from the management API.
func (p *amqpProber) unacked(ctx context.Context, q string) (int64, error) {
	vhost := strings.TrimPrefix(p.u.Path, "/")
	if vhost == "" {
		vhost = "/"
	}
	// The vhost is one path segment: "/" is sent as %2F.
	api := *p.mgmt
	api.Path = strings.TrimSuffix(p.mgmt.Path, "/") + "/api/queues/" + vhost + "/" + q
	api.RawPath = strings.TrimSuffix(p.mgmt.EscapedPath(), "/") + "/api/queues/" + url.PathEscape(vhost) + "/" + url.PathEscape(q)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, api.String(), nil)
	if err != nil {
		return 0, fmt.Errorf("management API %s: %w", redacted(p.mgmt), redactErr(err, p.mgmt))
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("management API %s: %w", redacted(p.mgmt), redactErr(err, p.mgmt))
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return 0, nil
	default:
		return 0, fmt.Errorf("management API %s: queue %s: %s", redacted(p.mgmt), q, resp.Status)
	}
	var body struct {
		Unacked int64 `json:"messages_unacknowledged"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, fmt.Errorf("management API %s: queue %s: %w", redacted(p.mgmt), q, err)
	}
	return body.Unacked, nil
}

// listen follows the workers' events: a private queue bound to Celery's
// event exchange for the worker.* routing keys.
func (p *amqpProber) listen(ctx context.Context, h *heartbeats) {
	for ctx.Err() == nil {
		err := p.consumeEvents(ctx, h)
		if ctx.Err() != nil {
			return
		}
		h.down(err)
		sleepCtx(ctx, retryDelay)
	}
}

func (p *amqpProber) consumeEvents(ctx context.Context, h *heartbeats) error {
	conn, err := p.connection()
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel on %s: %w", redacted(p.u), redactErr(err, p.u))
	}
	defer ch.Close()
	// Declared as Celery declares it (kombu's defaults: durable, not
	// auto-deleted), so the binding can exist before the first worker.
	if err := ch.ExchangeDeclare("celeryev", "topic", true, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange celeryev on %s: %w", redacted(p.u), redactErr(err, p.u))
	}
	q, err := ch.QueueDeclare("", false, true, true, false, amqp.Table{"x-message-ttl": int32(10000)})
	if err != nil {
		return fmt.Errorf("declare event queue on %s: %w", redacted(p.u), redactErr(err, p.u))
	}
	if err := ch.QueueBind(q.Name, "worker.#", "celeryev", false, nil); err != nil {
		return fmt.Errorf("bind event queue on %s: %w", redacted(p.u), redactErr(err, p.u))
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume events on %s: %w", redacted(p.u), redactErr(err, p.u))
	}
	h.up()
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return fmt.Errorf("worker events on %s: channel closed", redacted(p.u))
			}
			h.event(d.Body)
		}
	}
}
