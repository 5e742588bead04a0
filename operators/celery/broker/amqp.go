package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

	mu   sync.Mutex
	conn *amqp.Connection
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
	return p, nil
}

func (p *amqpProber) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conn != nil {
		err := p.conn.Close()
		p.conn = nil
		return err
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
	conn, err := amqp.DialConfig(p.u.String(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redacted(p.u), redactErr(err, p.u))
	}
	p.conn = conn
	return conn, nil
}

// Backlog declares each queue passively on its own channel: a queue that
// does not exist closes the channel (404), which means no backlog.
func (p *amqpProber) Backlog(ctx context.Context, queues []string) (map[string]Backlog, error) {
	conn, err := p.connection()
	if err != nil {
		return nil, err
	}
	out := make(map[string]Backlog, len(queues))
	for _, q := range queues {
		ready, err := p.ready(conn, q)
		if err != nil {
			return nil, err
		}
		out[q] = Backlog{Ready: ready}
	}
	if p.mgmt == nil {
		return out, nil
	}
	for _, q := range queues {
		unacked, err := p.unacked(ctx, q)
		if err != nil {
			return nil, err
		}
		b := out[q]
		b.Unacked, b.UnackedKnown = unacked, true
		out[q] = b
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
		return 0, fmt.Errorf("declare queue %s on %s: %w", q, redacted(p.u), redactErr(err, p.u))
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
