package processnode

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

func everything() labels.Selector { return labels.Everything() }

func clientScheme() *runtime.Scheme { return scheme.Scheme }

// proxy serves every ClusterIP Service's TCP ports inside the plane's
// namespace, where the whole Service range is local: a listener per
// ClusterIP and port, each connection sent to a ready endpoint picked at
// random, as kube-proxy does. It follows Services and EndpointSlices
// through informers, so a change applies at once; endpoints are chosen per
// connection, from the cache.
type proxy struct {
	net       *network
	apiServer string
	services  corelisters.ServiceLister
	slices    discoverylisters.EndpointSliceLister

	// lookup finds a listener's ready endpoints (p.endpoints; a benchmark
	// sets its own).
	lookup func(*svcListener) []string

	mu        sync.Mutex
	listeners map[string]*svcListener // "ip:port"
	kick      chan struct{}
	done      chan struct{}
	wg        sync.WaitGroup
}

type svcListener struct {
	l    net.Listener
	svc  string // ns/name
	port corev1.ServicePort
}

func newProxy(n *network, apiServer string, s corelisters.ServiceLister, e discoverylisters.EndpointSliceLister) *proxy {
	p := &proxy{net: n, apiServer: apiServer, services: s, slices: e,
		listeners: map[string]*svcListener{}, kick: make(chan struct{}, 1), done: make(chan struct{})}
	p.lookup = p.endpoints
	return p
}

func (p *proxy) handler() cache.ResourceEventHandler {
	f := func() {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: func(any) { f() }, UpdateFunc: func(any, any) { f() }, DeleteFunc: func(any) { f() }}
}

func (p *proxy) start() error {
	p.reconcile()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			select {
			case <-p.done:
				return
			case <-p.kick:
				p.reconcile()
			}
		}
	}()
	return nil
}

func (p *proxy) close() {
	close(p.done)
	p.mu.Lock()
	for k, l := range p.listeners {
		_ = l.l.Close()
		delete(p.listeners, k)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// reconcile opens a listener for every Service port and closes those of
// Services that went.
func (p *proxy) reconcile() {
	svcs, _ := p.services.List(everything())
	want := map[string]*svcListener{}
	for _, s := range svcs {
		if s.Spec.ClusterIP == "" || s.Spec.ClusterIP == corev1.ClusterIPNone || isDNSService(s) {
			continue
		}
		for _, port := range s.Spec.Ports {
			if port.Protocol != "" && port.Protocol != corev1.ProtocolTCP {
				continue
			}
			key := net.JoinHostPort(s.Spec.ClusterIP, strconv.Itoa(int(port.Port)))
			want[key] = &svcListener{svc: s.Namespace + "/" + s.Name, port: port}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, l := range p.listeners {
		if w, ok := want[k]; !ok || w.svc != l.svc || w.port.Name != l.port.Name || w.port.TargetPort != l.port.TargetPort {
			_ = l.l.Close()
			delete(p.listeners, k)
		}
	}
	for k, w := range want {
		if _, ok := p.listeners[k]; ok {
			continue
		}
		l, err := p.net.listen("tcp", k)
		if err != nil {
			continue // retried on the next change
		}
		w.l = l
		p.listeners[k] = w
		p.wg.Add(1)
		go func() { defer p.wg.Done(); p.serve(w) }()
	}
}

func (p *proxy) serve(l *svcListener) {
	for {
		conn, err := l.l.Accept()
		if err != nil {
			return
		}
		go p.forward(conn, l)
	}
}

func (p *proxy) forward(in net.Conn, l *svcListener) {
	defer in.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	out, err := p.dialBackend(ctx, l)
	cancel()
	if err != nil {
		return
	}
	defer out.Close()
	splice(in, out)
}

// dialBackend connects to a ready endpoint of the Service, or to the API
// server for default/kubernetes.
func (p *proxy) dialBackend(ctx context.Context, l *svcListener) (net.Conn, error) {
	if l.svc == "default/kubernetes" && p.apiServer != "" {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", p.apiServer)
	}
	addrs := p.lookup(l)
	if len(addrs) == 0 {
		return nil, fmt.Errorf("service %s port %d has no ready endpoints", l.svc, l.port.Port)
	}
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	var err error
	for _, a := range addrs {
		var c net.Conn
		if c, err = p.net.dial(ctx, "tcp", a); err == nil {
			return c, nil
		}
	}
	return nil, err
}

func (p *proxy) endpoints(l *svcListener) []string {
	ns, name, _ := cache.SplitMetaNamespaceKey(l.svc)
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name})
	slices, _ := p.slices.EndpointSlices(ns).List(sel)
	var out []string
	for _, s := range slices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		var port int32
		for _, sp := range s.Ports {
			if ptr.Deref(sp.Name, "") == l.port.Name && sp.Port != nil {
				port = *sp.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if !ptr.Deref(e.Conditions.Ready, true) {
				continue
			}
			for _, a := range e.Addresses {
				out = append(out, net.JoinHostPort(a, strconv.Itoa(int(port))))
			}
		}
	}
	return out
}

// splice copies both ways until both directions are done, passing on a
// half-close so protocols that rely on it keep working.
func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if c, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = c.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}
