package controlplane

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/setpoint-dev/setpoint/internal/certs"
)

// pki holds the files of the control plane's private certificate authority.
// They are kept in the data directory, so a restarted `setpoint dev --data-dir`
// reuses them and earlier kubeconfigs and service-account tokens stay valid.
type pki struct {
	dir string

	CACert, CAKey        string
	ServingCert          string
	ServingKey           string
	AdminCert, AdminKey  string
	ServiceAccountKey    string // RSA private key: signs tokens
	ServiceAccountPubKey string // its public half: verifies tokens
}

func newPKI(dir string) *pki {
	return &pki{
		dir:                  dir,
		CACert:               filepath.Join(dir, "ca.crt"),
		CAKey:                filepath.Join(dir, "ca.key"),
		ServingCert:          filepath.Join(dir, "apiserver.crt"),
		ServingKey:           filepath.Join(dir, "apiserver.key"),
		AdminCert:            filepath.Join(dir, "admin.crt"),
		AdminKey:             filepath.Join(dir, "admin.key"),
		ServiceAccountKey:    filepath.Join(dir, "sa.key"),
		ServiceAccountPubKey: filepath.Join(dir, "sa.pub"),
	}
}

// ensure creates whatever files are missing. Existing ones are kept: they
// belong to a cluster whose state is in etcd.
func (p *pki) ensure() error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return fmt.Errorf("create pki dir: %w", err)
	}
	if exists(p.CACert) && exists(p.CAKey) && exists(p.ServingCert) && exists(p.ServingKey) &&
		exists(p.AdminCert) && exists(p.AdminKey) && exists(p.ServiceAccountKey) && exists(p.ServiceAccountPubKey) {
		return nil
	}
	now := time.Now()
	const tenYears = 10 * 365 * 24 * time.Hour
	ca, err := certs.NewCA("setpoint-local-ca", now, tenYears)
	if err != nil {
		return err
	}
	if err := writeFile(p.CACert, ca.CertPEM, 0o644); err != nil {
		return err
	}
	if err := writeFile(p.CAKey, ca.KeyPEM, 0o600); err != nil {
		return err
	}
	leaf := func(certPath, keyPath string, l certs.Leaf) error {
		pair, err := ca.Sign(l, now, tenYears)
		if err != nil {
			return err
		}
		if err := writeFile(certPath, pair.CertPEM, 0o644); err != nil {
			return err
		}
		return writeFile(keyPath, pair.KeyPEM, 0o600)
	}
	if err := leaf(p.ServingCert, p.ServingKey, certs.Leaf{
		CommonName: "kube-apiserver",
		DNSNames:   []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPs:        []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
	}); err != nil {
		return err
	}
	// system:masters is the built-in group that RBAC always allows: this is
	// the cluster-admin identity of the kubeconfig.
	if err := leaf(p.AdminCert, p.AdminKey, certs.Leaf{
		CommonName: "setpoint-admin", Organization: []string{"system:masters"}, Client: true,
	}); err != nil {
		return err
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generate service-account key: %w", err)
	}
	if err := writePEM(p.ServiceAccountKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey), 0o600); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return fmt.Errorf("marshal service-account public key: %w", err)
	}
	return writePEM(p.ServiceAccountPubKey, "PUBLIC KEY", pub, 0o644)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	return writeFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode)
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}
