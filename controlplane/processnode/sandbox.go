package processnode

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// bind is one mount of the pod's view: Source on the host at Target in the
// pod. File binds a single file (resolv.conf, a subPath of a file).
type bind struct {
	Source   string
	Target   string
	ReadOnly bool
	File     bool
}

// sandbox is the process that holds a pod's namespaces, PID 1 of its PID
// namespace. Its root is the pod's root, so `nsenter -r` puts containers
// there.
type sandbox struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	done   chan struct{}
}

// podView is what the sandbox's setup script needs: the pod's directory
// on the host (root/ and stage/ are made in it), its hostname and binds.
type podView struct {
	Dir      string
	Hostname string
	Binds    []bind
	// HostMounts are the host's mount points other than /, bound at the
	// same place so that programs and files on them are found.
	HostMounts []string
	// HostNetwork keeps the host's network and UTS namespaces.
	HostNetwork bool
}

// startSandbox creates the namespaces and the pod's root and returns once
// every volume is in place.
func startSandbox(v podView) (*sandbox, error) {
	for _, d := range []string{"root", "rw", "stage"} {
		if err := os.MkdirAll(filepath.Join(v.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("create sandbox dir: %w", err)
		}
	}
	s := &sandbox{done: make(chan struct{})}
	s.cmd = exec.Command("sh", "-c", setupScript(v))
	s.cmd.Stderr = &s.stderr
	// A PID namespace of its own: the pod's processes see only each other,
	// and the kernel kills them all when the sandbox ends.
	flags := syscall.CLONE_NEWNS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWPID
	if !v.HostNetwork {
		flags |= syscall.CLONE_NEWNET | syscall.CLONE_NEWUTS
	}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: uintptr(flags), Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sandbox: %w", err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		return nil, fmt.Errorf("set up the pod's file system: %s", strings.TrimSpace(s.stderr.String()))
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	return s, nil
}

func (s *sandbox) pid() int { return s.cmd.Process.Pid }

// stop ends the sandbox: its namespaces, mounts and tmpfs go with it.
func (s *sandbox) stop() {
	_ = syscall.Kill(-s.pid(), syscall.SIGKILL)
	<-s.done
}

// setupScript runs in the sandbox's new namespaces. Mount targets are made
// from inside the chroot, so that symlinks such as /var/run -> /run resolve
// inside the pod's root and never reach the host's directories.
func setupScript(v podView) string {
	root, rw, stage := filepath.Join(v.Dir, "root"), filepath.Join(v.Dir, "rw"), filepath.Join(v.Dir, "stage")
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("set -eu")
	w("mount --make-rprivate /")
	w("mount -t tmpfs -o mode=0755 tmpfs %s", q(rw))
	w("mount -t tmpfs -o mode=0755 tmpfs %s", q(root))
	// Each top-level directory is an overlay of the host's: one of / itself
	// is refused inside a user namespace (its locked submounts), and this
	// way works with or without one. A directory whose overlay is refused
	// is bound as it is.
	w(`for e in /*; do n=${e#/}
  if [ -L "$e" ]; then ln -s "$(readlink "$e")" %[1]s/"$n"; continue; fi
  [ -d "$e" ] || continue
  mkdir -p %[1]s/"$n"
  case "$n" in proc|sys|dev|run) continue;; esac
  mkdir -p %[2]s/upper/"$n" %[2]s/work/"$n"
  mount -t overlay overlay -o lowerdir="$e",upperdir=%[2]s/upper/"$n",workdir=%[2]s/work/"$n" %[1]s/"$n" 2>/dev/null ||
    mount --rbind "$e" %[1]s/"$n"
done`, q(root), q(rw))
	// A pod's /run is its own, as in a container.
	w("mount -t tmpfs -o mode=0755 tmpfs %s", q(root+"/run"))
	for _, m := range v.HostMounts {
		// Best effort: a mount point the overlay cannot show as a directory
		// is left out rather than failing the pod.
		w("mount --bind %s %s 2>/dev/null || true", q(m), q(root+m))
	}
	w("mount -t proc proc %s", q(root+"/proc"))
	w("mount --rbind /sys %s", q(root+"/sys"))
	w("mount --rbind /dev %s", q(root+"/dev"))
	w("mount -t tmpfs -o mode=1777 shm %s", q(root+"/dev/shm"))
	for i, m := range v.Binds {
		// Sources are linked into the stage under a number, so the chroot
		// reaches each of them whatever file system it is on.
		src := fmt.Sprintf("%s/%d", stage, i)
		if m.File {
			w("touch %s && mount --bind %s %s", q(src), q(m.Source), q(src))
		} else {
			w("mkdir -p %s && mount --bind %s %s", q(src), q(m.Source), q(src))
		}
	}
	w("mkdir -p %s", q(root+"/.setpoint-stage"))
	w("mount --rbind %s %s", q(stage), q(root+"/.setpoint-stage"))
	var in strings.Builder
	in.WriteString("set -eu\n")
	for i, m := range v.Binds {
		src := fmt.Sprintf("/.setpoint-stage/%d", i)
		if m.File {
			fmt.Fprintf(&in, "mkdir -p \"$(dirname %[1]s)\" && { [ -e %[1]s ] || touch %[1]s; }\n", q(m.Target))
		} else {
			fmt.Fprintf(&in, "mkdir -p %s\n", q(m.Target))
		}
		fmt.Fprintf(&in, "mount --bind %s %s\n", q(src), q(m.Target))
		if m.ReadOnly {
			fmt.Fprintf(&in, "mount -o remount,bind,ro %s\n", q(m.Target))
		}
	}
	in.WriteString("umount -l /.setpoint-stage\n")
	w("chroot %s /bin/sh -c %s", q(root), q(in.String()))
	if !v.HostNetwork {
		w("hostname %s", q(v.Hostname))
	}
	w("echo ready")
	w("exec chroot %s sleep infinity", q(root))
	return b.String()
}

// q quotes s for sh.
func q(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// hostMounts lists the host's mount points below the top-level
// directories, which their overlays would not show: every mount but /,
// the top-level ones and the kernel's own trees.
func hostMounts() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == "/" || seen[mp] || skipMount(mp) || filepath.Dir(mp) == "/" {
			continue
		}
		if fi, err := os.Stat(mp); err != nil || !fi.IsDir() {
			continue
		}
		seen[mp] = true
		out = append(out, mp)
	}
	return out
}

func skipMount(mp string) bool {
	for _, p := range []string{"/proc", "/sys", "/dev", "/run"} {
		if mp == p || strings.HasPrefix(mp, p+"/") {
			return true
		}
	}
	return false
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
