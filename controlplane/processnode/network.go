package processnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses of the plane's network. kwok hands simulated pods addresses
// from 10.244.0.0/17; process pods get the upper half, so the two never
// collide. The Service range is the API server's --service-cluster-ip-range.
var (
	podPrefix     = netip.MustParsePrefix("10.244.128.0/17")
	gateway       = netip.MustParseAddr("10.244.128.1")
	serviceRange  = "10.0.0.0/16"
	dnsServiceIP  = netip.MustParseAddr("10.0.0.10")
	bridgeName    = "setpoint0"
	clusterDomain = "cluster.local"
)

// network is the plane's own network namespace: a bridge that every pod's
// veth joins, the Service range as local addresses (so the proxy can listen
// on any ClusterIP), and an allocator of pod addresses.
type network struct {
	holder *exec.Cmd // keeps the namespace alive; it ends with us
	nsPath string

	ops  chan func()   // run on the plane's thread
	done chan struct{} // closed when the plane's network ends

	mu   sync.Mutex
	used map[netip.Addr]bool
	next netip.Addr
}

func newNetwork() (*network, error) {
	// sleep holds the namespace; the kernel frees it when sleep dies, which
	// Pdeathsig makes sure of even if this process is killed.
	holder := exec.Command("sleep", "infinity")
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := holder.Start(); err != nil {
		return nil, fmt.Errorf("create the plane's network namespace: %w", err)
	}
	n := &network{holder: holder, nsPath: fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid),
		used: map[netip.Addr]bool{gateway: true}, next: gateway.Next()}
	script := fmt.Sprintf(`set -e
ip link set lo up
ip link add %[1]s type bridge
ip addr add %[2]s/%[3]d dev %[1]s
ip link set %[1]s up
ip route add local %[4]s dev lo`, bridgeName, gateway, podPrefix.Bits(), serviceRange)
	if err := nsRun(holder.Process.Pid, "-n", "sh", "-c", script); err != nil {
		n.close()
		return nil, fmt.Errorf("set up the plane's network: %w", err)
	}
	if err := n.startThread(); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

func (n *network) close() {
	if n.ops != nil {
		close(n.done)
	}
	_ = n.holder.Process.Kill()
	_ = n.holder.Wait()
}

func (n *network) pid() int { return n.holder.Process.Pid }

// allocate hands out a free pod address.
func (n *network) allocate() (netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for range 1 << (32 - podPrefix.Bits()) {
		a := n.next
		n.next = n.next.Next()
		if !podPrefix.Contains(n.next) || n.next == lastAddr(podPrefix) {
			n.next = gateway.Next()
		}
		if !n.used[a] && podPrefix.Contains(a) {
			n.used[a] = true
			return a, nil
		}
	}
	return netip.Addr{}, errors.New("no free pod address")
}

func (n *network) release(a netip.Addr) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.used, a)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	hostBits := 32 - p.Bits()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1 << hostBits) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// attach gives the sandbox process pid an eth0 with addr on the bridge.
// The veth's host end lives in the plane's namespace and goes away with
// the sandbox's namespace.
func (n *network) attach(pid int, addr netip.Addr) error {
	host := "veth" + strconv.Itoa(pid)
	// Made inside the plane's namespace, which we own even in a user
	// namespace, and its peer moved into the pod's.
	if err := nsRun(n.pid(), "-n", "ip", "link", "add", host, "type", "veth",
		"peer", "name", "eth0", "netns", strconv.Itoa(pid)); err != nil {
		return fmt.Errorf("create veth: %w", err)
	}
	if err := nsRun(n.pid(), "-n", "ip", "link", "set", host, "master", bridgeName, "up"); err != nil {
		return fmt.Errorf("attach veth to the bridge: %w", err)
	}
	script := fmt.Sprintf(`set -e
ip link set lo up
ip addr add %s/%d dev eth0
ip link set eth0 up
ip route add default via %s`, addr, podPrefix.Bits(), gateway)
	if err := nsRun(pid, "-n", "sh", "-c", script); err != nil {
		return fmt.Errorf("configure eth0: %w", err)
	}
	return nil
}

// startThread makes the plane's thread: a goroutine locked to an OS thread
// that has joined the plane's namespace and stays there, creating every
// socket the runtime needs in it (a socket keeps the namespace it was made
// in). One long-lived thread, because a thread that joined a namespace of
// a user namespace cannot go back and would have to end, and a thread's
// end sends the parent-death signal to the children it forked.
func (n *network) startThread() error {
	n.ops, n.done = make(chan func()), make(chan struct{})
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with close
		f, err := os.Open(n.nsPath)
		if err != nil {
			ready <- fmt.Errorf("open the plane's network namespace: %w", err)
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			ready <- fmt.Errorf("enter the plane's network namespace: %w", err)
			return
		}
		ready <- nil
		for {
			select {
			case op := <-n.ops:
				op()
			case <-n.done:
				return
			}
		}
	}()
	return <-ready
}

// inPlane runs fn on the plane's thread. fn must not block for long.
func (n *network) inPlane(fn func() error) error {
	errc := make(chan error, 1)
	// A proxied connection or a CONNECT may still dial while the plane
	// stops: it gets an error, not a send on a closed channel.
	select {
	case n.ops <- func() { errc <- fn() }:
	case <-n.done:
		return errors.New("the plane's network is closed")
	}
	return <-errc
}

// listen opens a listener inside the plane's namespace.
func (n *network) listen(network, addr string) (l net.Listener, err error) {
	err = n.inPlane(func() error {
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

func (n *network) listenPacket(network, addr string) (c net.PacketConn, err error) {
	err = n.inPlane(func() error {
		c, err = net.ListenPacket(network, addr)
		return err
	})
	return c, err
}

// dial connects to an IPv4 addr (a pod address or a ClusterIP) from inside
// the plane's namespace: the socket is made on the plane's thread, the
// connect (which may take long) happens here.
func (n *network) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return nil, fmt.Errorf("dial %s in the plane: want an IPv4 address and port", addr)
	}
	var fd int
	if err := n.inPlane(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		return nil, fmt.Errorf("socket in the plane: %w", err)
	}
	f := os.NewFile(uintptr(fd), "plane "+addr)
	defer f.Close() // FileConn holds a copy
	timeout := 30 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d), time.Millisecond)
	}
	// connect(2) gives up after the send timeout.
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Addr: net.TCPAddrFromAddrPort(ap), Err: err}
	}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &unix.Timeval{})
	return net.FileConn(f)
}

// nsRun runs a command inside the namespaces (nsenter flags) of pid.
func nsRun(pid int, nsFlags string, args ...string) error {
	return run("nsenter", append([]string{"-t", strconv.Itoa(pid), nsFlags, "--"}, args...)...)
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
