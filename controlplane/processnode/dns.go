package processnode

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/utils/ptr"
)

// dnsServer answers cluster names from the informers' caches, as CoreDNS's
// kubernetes plugin does: <svc>.<ns>.svc.cluster.local is the ClusterIP
// (a headless Service's ready endpoints), <host>.<svc>.<ns>.svc.cluster.local
// an endpoint with that hostname (a StatefulSet's pod). Other names get
// NXDOMAIN: no query leaves the machine.
type dnsServer struct {
	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	udp      net.PacketConn
	tcp      net.Listener
	wg       sync.WaitGroup
}

func isDNSService(s *corev1.Service) bool {
	return s.Namespace == metav1.NamespaceSystem && s.Name == "kube-dns"
}

// ensureDNSService reserves the DNS address with a Service of its own, so
// the API server never gives it to another Service.
func ensureDNSService(ctx context.Context, cs kubernetes.Interface) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: metav1.NamespaceSystem,
			Labels: map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "setpoint-dns"}},
		Spec: corev1.ServiceSpec{ClusterIP: dnsServiceIP.String(), Ports: []corev1.ServicePort{
			{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
			{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP},
		}},
	}
	// Look first: for an existing Service the API server reports the
	// address as taken before it reports the name.
	if _, err := cs.CoreV1().Services(metav1.NamespaceSystem).Get(ctx, svc.Name, metav1.GetOptions{}); err == nil {
		return nil
	}
	_, err := cs.CoreV1().Services(metav1.NamespaceSystem).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("reserve the DNS address %s: %w", dnsServiceIP, err)
	}
	return nil
}

func startDNS(n *network, s corelisters.ServiceLister, e discoverylisters.EndpointSliceLister) (*dnsServer, error) {
	d := &dnsServer{services: s, slices: e}
	addr := net.JoinHostPort(dnsServiceIP.String(), "53")
	var err error
	if d.udp, err = n.listenPacket("udp", addr); err != nil {
		return nil, err
	}
	if d.tcp, err = n.listen("tcp", addr); err != nil {
		d.udp.Close()
		return nil, err
	}
	d.wg.Add(2)
	go func() { defer d.wg.Done(); d.serveUDP() }()
	go func() { defer d.wg.Done(); d.serveTCP() }()
	return d, nil
}

func (d *dnsServer) close() {
	d.udp.Close()
	d.tcp.Close()
	d.wg.Wait()
}

func (d *dnsServer) serveUDP() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		if out := d.answer(buf[:n]); out != nil {
			_, _ = d.udp.WriteTo(out, from)
		}
	}
}

func (d *dnsServer) serveTCP() {
	for {
		c, err := d.tcp.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			var l [2]byte
			for {
				if _, err := io.ReadFull(c, l[:]); err != nil {
					return
				}
				msg := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, msg); err != nil {
					return
				}
				out := d.answer(msg)
				if out == nil {
					return
				}
				if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...)); err != nil {
					return
				}
			}
		}()
	}
}

// answer builds the reply to one query message.
func (d *dnsServer) answer(req []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(req)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired}
	addrs, known := d.resolve(strings.ToLower(strings.TrimSuffix(q.Name.String(), ".")))
	if !known {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	if q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeALL {
		for _, a := range addrs {
			_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 5}, dnsmessage.AResource{A: a.As4()})
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// resolve answers a cluster name: its addresses, and whether it exists.
func (d *dnsServer) resolve(name string) ([]netip.Addr, bool) {
	suffix := ".svc." + clusterDomain
	if !strings.HasSuffix(name, suffix) {
		return nil, false
	}
	parts := strings.Split(strings.TrimSuffix(name, suffix), ".")
	switch len(parts) {
	case 2:
		return d.service(parts[1], parts[0])
	case 3:
		return d.endpointHost(parts[2], parts[1], parts[0])
	}
	return nil, false
}

func (d *dnsServer) service(ns, name string) ([]netip.Addr, bool) {
	s, err := d.services.Services(ns).Get(name)
	if err != nil {
		return nil, false
	}
	if s.Spec.ClusterIP != corev1.ClusterIPNone {
		a, err := netip.ParseAddr(s.Spec.ClusterIP)
		if err != nil {
			return nil, true
		}
		return []netip.Addr{a}, true
	}
	var out []netip.Addr
	d.eachEndpoint(ns, name, func(e discoveryv1.Endpoint, a netip.Addr) { out = append(out, a) })
	return out, true
}

func (d *dnsServer) endpointHost(ns, svc, host string) ([]netip.Addr, bool) {
	var out []netip.Addr
	d.eachEndpoint(ns, svc, func(e discoveryv1.Endpoint, a netip.Addr) {
		if ptr.Deref(e.Hostname, "") == host {
			out = append(out, a)
		}
	})
	return out, len(out) > 0
}

// eachEndpoint calls fn for every ready-or-serving IPv4 endpoint address of
// a Service. Not-ready addresses count when the Service publishes them
// (publishNotReadyAddresses, as StatefulSets' headless Services often do).
func (d *dnsServer) eachEndpoint(ns, svc string, fn func(discoveryv1.Endpoint, netip.Addr)) {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc})
	slices, _ := d.slices.EndpointSlices(ns).List(sel)
	for _, s := range slices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		for _, e := range s.Endpoints {
			if !ptr.Deref(e.Conditions.Ready, true) {
				continue
			}
			for _, a := range e.Addresses {
				if ip, err := netip.ParseAddr(a); err == nil {
					fn(e, ip)
				}
			}
		}
	}
}
