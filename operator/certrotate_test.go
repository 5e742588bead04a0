package operator_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/setpoint-dev/setpoint/internal/certs"
	"github.com/setpoint-dev/setpoint/operator"
	"github.com/setpoint-dev/setpoint/testkit"
)

// TestWebhookCertificateRotatesWithoutARestart: a new CA and serving
// certificate put in the certificate Secret are served without a
// restart, and 50 admission calls made while they are put there all
// reach the webhook: none fails TLS. The API server keeps its
// connections, so each call is also paired with a fresh handshake
// verified against the CA bundle registered at that moment, as the API
// server's next connection would be.
func TestWebhookCertificateRotatesWithoutARestart(t *testing.T) {
	ns := testkit.Env(t).Namespace(t)
	c := testkit.Env(t).Client
	ref := types.NamespacedName{Namespace: ns, Name: "webhook-cert"}
	o := opts(ns)
	o.Webhooks = testkit.Webhooks(t)
	o.Webhooks.CertSecret = ref
	o.Webhooks.CertCheckInterval = 200 * time.Millisecond
	addr := strings.TrimPrefix(o.Webhooks.URL, "https://")
	start(t, nil, o, func(op *operator.Operator) {
		operator.Watch[*corev1.ConfigMap](op).OnValidate(func(_ context.Context, r *operator.Review[*corev1.ConfigMap]) error {
			if r.Object.Data["refuse"] == "yes" {
				r.Refuse("refused by the webhook")
			}
			return nil
		})
	})
	call := func() error {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "probe-"}, Data: map[string]string{"refuse": "yes"}}
		err := c.Create(t.Context(), cm, client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "refused by the webhook") {
			return fmt.Errorf("the webhook did not answer: %v", err)
		}
		return nil
	}
	testkit.Eventually(t, wait, call)

	// Calls run all along the rotation.
	var calls, failures atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			calls.Add(1)
			if err := call(); err != nil {
				failures.Add(1)
				firstFailure.CompareAndSwap(nil, err.Error())
			}
			if err := handshake(t, addr, "test-"+ns); err != nil {
				failures.Add(1)
				firstFailure.CompareAndSwap(nil, err.Error())
			}
		}
	})

	// A rotation by hand: a new CA and certificate for 90 days.
	rotated := putCert(t, ref, 90*24*time.Hour)
	testkit.Eventually(t, wait, func() error {
		served, err := servedCert(addr)
		if err != nil {
			return err
		}
		if !bytes.Equal(served.Raw, rotated) {
			return errors.New("still serving the old certificate")
		}
		if calls.Load() < 50 {
			return fmt.Errorf("%d calls so far", calls.Load())
		}
		return nil
	})
	// One that ends within 30 days is renewed: a new one, in the Secret
	// and served.
	expiring := putCert(t, ref, 24*time.Hour)
	testkit.Eventually(t, wait, func() error {
		served, err := servedCert(addr)
		if err != nil {
			return err
		}
		if bytes.Equal(served.Raw, expiring) || bytes.Equal(served.Raw, rotated) || time.Until(served.NotAfter) < 365*24*time.Hour {
			return fmt.Errorf("serving a certificate that ends %s", served.NotAfter)
		}
		s := &corev1.Secret{}
		if err := c.Get(t.Context(), ref, s); err != nil {
			return err
		}
		if !bytes.Equal(derOf(t, s.Data[corev1.TLSCertKey]), served.Raw) {
			return errors.New("the renewed certificate is not the one in the Secret")
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d admission calls failed during the rotation; first: %v", n, calls.Load(), firstFailure.Load())
	}
	t.Logf("%d admission calls during the rotation, %d failed", calls.Load(), failures.Load())
}

// handshake connects to addr trusting only the CA bundle of the
// validating webhook configuration name, as the API server does.
func handshake(t *testing.T, addr, name string) error {
	var cfg admissionregistrationv1.ValidatingWebhookConfiguration
	if err := testkit.Env(t).Client.Get(context.Background(), client.ObjectKey{Name: name}, &cfg); err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cfg.Webhooks[0].ClientConfig.CABundle) {
		return errors.New("no CA in the registered bundle")
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		return fmt.Errorf("handshake with the registered CA bundle: %w", err)
	}
	return conn.Close()
}

// servedCert is the certificate the server at addr presents.
func servedCert(addr string) (*x509.Certificate, error) {
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // only reading which certificate is served
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// putCert replaces the certificate Secret's content with a new CA and a
// certificate for 127.0.0.1 valid for validity, and returns its DER.
func putCert(t *testing.T, ref types.NamespacedName, validity time.Duration) []byte {
	t.Helper()
	now := time.Now()
	ca, err := certs.NewCA("rotated-ca", now, validity)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := ca.Sign(certs.Leaf{CommonName: "127.0.0.1", IPs: []net.IP{net.ParseIP("127.0.0.1")}}, now, validity)
	if err != nil {
		t.Fatal(err)
	}
	c := testkit.Env(t).Client
	testkit.Eventually(t, wait, func() error {
		s := &corev1.Secret{}
		if err := c.Get(t.Context(), ref, s); err != nil {
			return err
		}
		s.Data = map[string][]byte{"ca.crt": ca.CertPEM, corev1.TLSCertKey: pair.CertPEM, corev1.TLSPrivateKeyKey: pair.KeyPEM}
		return c.Update(t.Context(), s)
	})
	return derOf(t, pair.CertPEM)
}

func derOf(t *testing.T, certPEM []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("not a PEM certificate")
	}
	return block.Bytes
}
