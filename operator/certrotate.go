package operator

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/setpoint-dev/setpoint/internal/certs"
)

// caPropagation is how long a replica waits, after registering a CA
// bundle that trusts a new certificate, before it serves that
// certificate: the API server follows webhook configurations through an
// informer, within milliseconds; this is margin, so no call fails TLS
// during a rotation.
var caPropagation = 2 * time.Second

// refresh serves the certificate in CertSecret when it is not the one
// served (a rotation), and renews the served one when it nears its end,
// registering a CA bundle that trusts both before switching.
func (ws *webhookServer) refresh(ctx context.Context, op *Operator, register func(context.Context) error) error {
	ws.mu.Lock()
	served := ws.servedPEM
	ws.mu.Unlock()
	renew := !certs.Covers(ws.bundle(), served, ws.hosts(), time.Now().Add(certRenewBefore))
	key := ws.opts.CertSecret
	if key.Name == "" {
		if !renew {
			return nil
		}
		ca, crt, k, err := ws.issue(op)
		if err != nil {
			return err
		}
		return ws.rotate(ctx, ca, crt, k, register)
	}
	s := &corev1.Secret{}
	if err := op.mgr.GetAPIReader().Get(ctx, key, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // deleted: keep serving; a restart makes a new one
		}
		return fmt.Errorf("read webhook certificate Secret %s: %w", key, err)
	}
	crt := s.Data[corev1.TLSCertKey]
	if !bytes.Equal(crt, served) {
		return ws.rotate(ctx, s.Data[certCAKey], crt, s.Data[corev1.TLSPrivateKeyKey], register)
	}
	if !renew {
		return nil
	}
	// Renew through the Secret, guarded by its resourceVersion: the
	// replica that wins writes, every replica (itself included) then
	// rotates to it on its next read.
	ca, newCrt, k, err := ws.issue(op)
	if err != nil {
		return err
	}
	s.Data = map[string][]byte{certCAKey: ca, corev1.TLSCertKey: newCrt, corev1.TLSPrivateKeyKey: k}
	if err := op.mgr.GetClient().Update(ctx, s); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("renew webhook certificate in Secret %s: %w", key, err)
	}
	op.log.Info("Webhook serving certificate renewed", "secret", key.String())
	return nil
}

// rotate registers a bundle that trusts ca as well as the CA served so
// far, waits for the API server to follow, and serves the new pair.
func (ws *webhookServer) rotate(ctx context.Context, ca, crt, key []byte, register func(context.Context) error) error {
	pair, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return fmt.Errorf("new webhook serving certificate: %w", err)
	}
	if !certs.Covers(ca, crt, ws.hosts(), time.Now()) {
		return fmt.Errorf("new webhook serving certificate is not valid for %s or not signed by its ca.crt", strings.Join(ws.hosts(), ", "))
	}
	old := ws.bundle()
	if !bytes.Contains(old, bytes.TrimSpace(ca)) {
		// The new CA first, then the one in use: never more than two.
		bundle := append(append([]byte{}, ca...), firstPEM(old)...)
		ws.mu.Lock()
		ws.caBundle = bundle
		ws.mu.Unlock()
		if err := register(ctx); err != nil {
			ws.mu.Lock()
			ws.caBundle = old
			ws.mu.Unlock()
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(caPropagation):
		}
	}
	ws.mu.Lock()
	ws.servedPEM = crt
	ws.mu.Unlock()
	ws.cert.Store(&pair)
	return nil
}

// firstPEM is the first PEM block of b (the CA in use, which a bundle
// lists first).
func firstPEM(b []byte) []byte {
	const end = "-----END CERTIFICATE-----"
	i := bytes.Index(b, []byte(end))
	if i < 0 {
		return b
	}
	return append(bytes.TrimSpace(b[:i+len(end)]), '\n')
}

// issue makes a new CA and serving certificate for the server's hosts.
func (ws *webhookServer) issue(op *Operator) (ca, crt, key []byte, err error) {
	now := time.Now()
	c, err := certs.NewCA(op.opts.Name+"-webhook-ca", now, certValidity)
	if err != nil {
		return nil, nil, nil, err
	}
	hosts := ws.hosts()
	leaf := certs.Leaf{CommonName: hosts[0]}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			leaf.IPs = append(leaf.IPs, ip)
		} else {
			leaf.DNSNames = append(leaf.DNSNames, h)
		}
	}
	pair, err := c.Sign(leaf, now, certValidity)
	if err != nil {
		return nil, nil, nil, err
	}
	return c.CertPEM, pair.CertPEM, pair.KeyPEM, nil
}
