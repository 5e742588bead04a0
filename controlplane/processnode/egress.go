package processnode

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"
)

// EgressSocket is the file name, in Options.Dir, of the HTTP CONNECT proxy
// the API server sends its traffic to the cluster through (its egress
// selector's "cluster" connection): the pods/proxy and services/proxy
// subresources, kubelets and webhooks. Addresses of the plane's network
// exist only inside its namespace, so without this an operator outside
// it (`setpoint dev`, the test kit) could not reach a pod's HTTP endpoint
// the way it would on a real cluster, through the API server.
const EgressSocket = "egress.sock"

// EgressConfig is the API server's --egress-selector-config-file that
// sends cluster traffic to the proxy listening at socket.
func EgressConfig(socket string) string {
	return fmt.Sprintf(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
- name: cluster
  connection:
    proxyProtocol: HTTPConnect
    transport:
      uds:
        udsName: %q
`, socket)
}

// serveEgress answers CONNECT requests on a Unix socket: addresses of the
// plane (pods, ClusterIPs) are dialled inside its namespace, everything
// else (kubelets on loopback, webhooks) from here.
func serveEgress(n *network, path string) (func(), error) {
	_ = os.Remove(path) // a socket left by a plane that was killed
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("egress proxy: %w", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go connect(n, c)
		}
	}()
	return func() { l.Close(); wg.Wait() }, nil
}

// connect serves one CONNECT: the API server dials once per connection.
func connect(n *network, c net.Conn) {
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if req.Method != http.MethodConnect {
		fmt.Fprintf(c, "HTTP/1.1 405 Method Not Allowed\r\n\r\n")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	up, err := egressDial(ctx, n, req.Host)
	cancel()
	if err != nil {
		fmt.Fprintf(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	defer up.Close()
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, br); closeWrite(up); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); closeWrite(c); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// inPlaneNetwork reports whether addr (host:port) is a pod address or a
// ClusterIP of the plane.
func inPlaneNetwork(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return false
	}
	return podPrefix.Contains(ap.Addr()) || netip.MustParsePrefix(serviceRange).Contains(ap.Addr())
}

func egressDial(ctx context.Context, n *network, addr string) (net.Conn, error) {
	if inPlaneNetwork(addr) {
		return n.dial(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}
