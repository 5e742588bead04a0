package processnode

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// BenchmarkServiceProxy measures what the service proxy adds: a
// connection and a one-byte round trip to an echo server in the plane's
// namespace, directly and through a ClusterIP, and the throughput of a
// 64 MiB stream each way.
//
//	go test -run '^$' -bench ServiceProxy ./controlplane/processnode/
func BenchmarkServiceProxy(b *testing.B) {
	n, err := newNetwork()
	if err != nil {
		b.Skip(err) // not root: process nodes cannot run here
	}
	defer n.close()
	backend := netip.AddrPortFrom(gateway, 7001)
	l, err := n.listen("tcp", backend.String())
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go echo(l)
	px := newProxy(n, "", nil, nil)
	px.lookup = func(*svcListener) []string { return []string{backend.String()} }
	vip := "10.0.200.1:80"
	pl, err := n.listen("tcp", vip)
	if err != nil {
		b.Fatal(err)
	}
	sl := &svcListener{l: pl, svc: "bench/echo", port: corev1.ServicePort{Port: 80}}
	go px.serve(sl)
	defer pl.Close()
	for _, target := range []struct{ name, addr string }{{"direct", backend.String()}, {"proxied", vip}} {
		b.Run("connect+rtt/"+target.name, func(b *testing.B) {
			buf := []byte{1}
			for range b.N {
				c, err := n.dial(context.Background(), "tcp", target.addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
		b.Run("throughput/"+target.name, func(b *testing.B) {
			const size = 64 << 20
			b.SetBytes(size)
			for range b.N {
				c, err := n.dial(context.Background(), "tcp", target.addr)
				if err != nil {
					b.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { _, err := io.CopyN(io.Discard, c, size); done <- err }()
				if _, err := io.CopyN(c, zeros{}, size); err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
}

func echo(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
