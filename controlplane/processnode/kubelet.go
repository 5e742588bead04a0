package processnode

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/setpoint-dev/setpoint/internal/certs"
)

// KubeletTLS is how the API server and the kubelet API trust each other:
// the API server presents a client certificate signed by ClientCA (its
// --kubelet-client-certificate), and nobody else may call the API.
type KubeletTLS struct {
	ClientCAFile string
}

// serveKubelet serves the parts of the kubelet API that kubectl reaches
// through the API server: containerLogs, exec and portForward. It returns
// its port on loopback.
func serveKubelet(rt *Runtime, t KubeletTLS) (int, func(), error) {
	cfg, err := kubeletTLSConfig(t)
	if err != nil {
		return 0, nil, err
	}
	mux := http.NewServeMux()
	k := &kubelet{rt: rt}
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", k.logs)
	for _, m := range []string{"GET", "POST"} {
		mux.HandleFunc(m+" /exec/{ns}/{pod}/{container}", k.exec)
		mux.HandleFunc(m+" /exec/{ns}/{pod}/{uid}/{container}", k.exec)
		mux.HandleFunc(m+" /portForward/{ns}/{pod}", k.portForward)
		mux.HandleFunc(m+" /portForward/{ns}/{pod}/{uid}", k.portForward)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		return 0, nil, fmt.Errorf("kubelet API: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return l.Addr().(*net.TCPAddr).Port, func() { _ = srv.Close() }, nil
}

// kubeletTLSConfig serves a certificate made at start (the API server does
// not check a kubelet's unless told to) and requires clients signed by the
// plane's CA.
func kubeletTLSConfig(t KubeletTLS) (*tls.Config, error) {
	now := time.Now()
	ca, err := certs.NewCA("setpoint-process-node", now, 10*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	pair, err := ca.Sign(certs.Leaf{CommonName: "setpoint-process-node", IPs: []net.IP{net.ParseIP(nodeIP)}}, now, 10*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("kubelet client CA: %w", err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

type kubelet struct{ rt *Runtime }

func (k *kubelet) lookup(w http.ResponseWriter, r *http.Request) (*podWorker, *container, bool) {
	pw := k.rt.worker(r.PathValue("ns"), r.PathValue("pod"))
	if pw == nil {
		http.Error(w, "pod does not exist on this process node", http.StatusNotFound)
		return nil, nil, false
	}
	name := r.PathValue("container")
	if name == "" {
		return pw, nil, true
	}
	for _, c := range append(append([]*container{}, pw.inits...), pw.ctrs...) {
		if c.spec.Name == name {
			return pw, c, true
		}
	}
	http.Error(w, fmt.Sprintf("container %s is not valid for pod %s", name, r.PathValue("pod")), http.StatusNotFound)
	return nil, nil, false
}

func (k *kubelet) logs(w http.ResponseWriter, r *http.Request) {
	pw, c, ok := k.lookup(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	// Run n logs to n.log; the current log is the last run's, also while
	// the next one waits to start.
	c.mu.Lock()
	run := int32(max(c.runs-1, 0))
	c.mu.Unlock()
	if q.Get("previous") == "true" {
		if run == 0 {
			http.Error(w, fmt.Sprintf("previous terminated container %q in pod %q not found", c.spec.Name, r.PathValue("pod")), http.StatusBadRequest)
			return
		}
		run--
	}
	f, err := os.Open(c.logPath(pw.dir, run))
	if err != nil {
		http.Error(w, fmt.Sprintf("container %q in pod %q is waiting to start", c.spec.Name, r.PathValue("pod")), http.StatusBadRequest)
		return
	}
	defer f.Close()
	w.Header().Set("Content-Type", "text/plain")
	if err := writeTail(w, f, q.Get("tailLines"), q.Get("limitBytes")); err != nil {
		return
	}
	if q.Get("follow") == "true" && q.Get("previous") != "true" {
		follow(r.Context(), w, f, func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return int32(c.runs-1) == run && c.state.Running != nil
		})
	}
}

// writeTail copies the file from where its last tailLines lines start, at
// most limitBytes of it.
func writeTail(w io.Writer, f *os.File, tailLines, limitBytes string) error {
	if n, err := strconv.Atoi(tailLines); err == nil && n >= 0 {
		b, err := io.ReadAll(f)
		if err != nil {
			return err
		}
		lines := bytes.SplitAfter(b, []byte("\n"))
		if len(lines) > 0 && len(lines[len(lines)-1]) == 0 {
			lines = lines[:len(lines)-1]
		}
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		_, err = w.Write(bytes.Join(lines, nil))
		return err
	}
	var r io.Reader = f
	if n, err := strconv.ParseInt(limitBytes, 10, 64); err == nil && n > 0 {
		r = io.LimitReader(f, n)
	}
	_, err := io.Copy(w, r)
	return err
}

// follow streams what is appended to f while the run is alive.
func follow(ctx context.Context, w io.Writer, f *os.File, alive func() bool) {
	flusher, _ := w.(http.Flusher)
	br := bufio.NewReader(f)
	buf := make([]byte, 32<<10)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return
		}
		if !alive() {
			// One last read catches what was written just before the end.
			if n, _ := br.Read(buf); n > 0 {
				_, _ = w.Write(buf[:n])
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (k *kubelet) exec(w http.ResponseWriter, r *http.Request) {
	pw, c, ok := k.lookup(w, r)
	if !ok {
		return
	}
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	remotecommand.ServeExec(w, r, executor{pw: pw, c: c}, podKey(pw.current()), string(pw.current().UID), c.spec.Name,
		r.URL.Query()["command"], opts, 4*time.Hour, remotecommand.DefaultStreamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (k *kubelet) portForward(w http.ResponseWriter, r *http.Request) {
	pw, _, ok := k.lookup(w, r)
	if !ok {
		return
	}
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	portforward.ServePortForward(w, r, forwarder{pw: pw}, podKey(pw.current()), string(pw.current().UID), opts,
		4*time.Hour, remotecommand.DefaultStreamCreationTimeout, portforward.SupportedProtocols)
}

type forwarder struct{ pw *podWorker }

func (f forwarder) PortForward(ctx context.Context, _ string, _ string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	f.pw.mu.Lock()
	ip := f.pw.ip
	f.pw.mu.Unlock()
	conn, err := f.pw.dial(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(int(port))))
	if err != nil {
		return fmt.Errorf("port-forward to port %d of %s: %w", port, podKey(f.pw.current()), err)
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, stream); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, conn); done <- struct{}{} }()
	<-done
	return nil
}

type executor struct {
	pw *podWorker
	c  *container
}

// ExecInContainer runs cmd inside the pod as the container would, with a
// terminal when asked. A non-zero exit is reported with its code.
func (e executor) ExecInContainer(ctx context.Context, _ string, _ string, _ string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	c, err := e.pw.execCommand(ctx, e.c, cmd)
	if err != nil {
		return err
	}
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if tty {
		err = runTTY(c, in, out, resize)
	} else {
		err = runPlain(c, in, out, errOut)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code, _ := exitCode(ee.ProcessState)
		return utilexec.CodeExitError{Err: err, Code: int(code)}
	}
	return err
}

// runPlain wires the streams through pipes; stdin is copied without being
// waited for, since a client may keep it open after the command ends.
func runPlain(c *exec.Cmd, in io.Reader, out, errOut io.Writer) error {
	c.Stdout, c.Stderr = out, errOut
	if in == nil {
		return c.Run()
	}
	stdin, err := c.StdinPipe()
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		return err
	}
	go func() { _, _ = io.Copy(stdin, in); _ = stdin.Close() }()
	return c.Wait()
}

func runTTY(c *exec.Cmd, in io.Reader, out io.Writer, resize <-chan remotecommand.TerminalSize) error {
	master, slave, err := openPTY()
	if err != nil {
		return err
	}
	defer master.Close()
	c.Stdin, c.Stdout, c.Stderr = slave, slave, slave
	c.SysProcAttr.Setsid, c.SysProcAttr.Setctty, c.SysProcAttr.Ctty = true, true, 0
	err = c.Start()
	slave.Close()
	if err != nil {
		return err
	}
	go func() {
		for sz := range resize {
			_ = unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: sz.Height, Col: sz.Width})
		}
	}()
	if in != nil {
		go func() { _, _ = io.Copy(master, in) }()
	}
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(out, master); close(copied) }()
	err = c.Wait()
	select {
	case <-copied:
	case <-time.After(time.Second): // a background child may hold the terminal
	}
	return err
}

func openPTY() (*os.File, *os.File, error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("open pty %d: %w", n, err)
	}
	return m, s, nil
}
