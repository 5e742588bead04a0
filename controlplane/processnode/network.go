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
	return n, nil
}

func (n *network) close() {
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
	if err := run("ip", "link", "add", host, "netns", strconv.Itoa(n.pid()), "type", "veth",
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

// inPlane runs fn on an OS thread that has joined the plane's network
// namespace. Sockets keep the namespace they were made in, so listeners
// and connections made by fn work from any goroutine afterwards.
func (n *network) inPlane(fn func() error) error {
	return inNetns(n.nsPath, fn)
}

func inNetns(path string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own network namespace: %w", err)
	}
	defer orig.Close()
	target, err := os.Open(path)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace: %w", err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: Go ends it with this goroutine rather
		// than reuse a thread in the wrong namespace.
		return errors.Join(fnErr, fmt.Errorf("return to own network namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return fnErr
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

// dial connects to addr from inside the plane's namespace (a pod address
// or a ClusterIP).
func (n *network) dial(ctx context.Context, network, addr string) (c net.Conn, err error) {
	// The goroutine keeps its thread (in the namespace) until connected.
	var d net.Dialer
	err = n.inPlane(func() error {
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
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
