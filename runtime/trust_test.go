package runtime

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrustWrite: at create, the container's CA is made (its key 0600,
// beside the certificate, never in the bundle) and its trust bundle is
// the image's own CAs and the CA's certificate.
func TestTrustWrite(t *testing.T) {
	root, rootfs := t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "c1"), 0o711); err != nil {
		t.Fatal(err)
	}
	imageCA := "-----BEGIN CERTIFICATE-----\nIMAGE\n-----END CERTIFICATE-----\n"
	mkfile(t, filepath.Join(rootfs, "etc/pki/tls/certs/ca-bundle.crt"), imageCA)
	tf, err := trustFor(root, "c1", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := tf.write("c1", rootfs); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(tf.CAKey)
	if err != nil || st.Mode().Perm() != 0o600 || filepath.Dir(tf.CAKey) != filepath.Join(root, "c1") {
		t.Fatalf("key %s: %v %v", tf.CAKey, st, err)
	}
	bundle, _ := os.ReadFile(tf.Bundle)
	cert, _ := os.ReadFile(tf.CACert)
	if !strings.HasPrefix(string(bundle), imageCA) || !bytes.HasSuffix(bundle, cert) || bytes.Contains(bundle, []byte("PRIVATE KEY")) {
		t.Errorf("bundle:\n%s", bundle)
	}
	// Nothing is replaced: a second create's files would be refused.
	if err := tf.write("c1", rootfs); err == nil {
		t.Error("the CA files were written over")
	}
	// A container sharing c1's filter trusts c1's CA, in a bundle of its own.
	if err := os.MkdirAll(filepath.Join(root, "c2"), 0o711); err != nil {
		t.Fatal(err)
	}
	shared, err := trustFor(root, "c2", "c1")
	if err != nil || shared.MakeCA || shared.CACert != tf.CACert || shared.CAKey != "" {
		t.Fatalf("shared %+v, %v", shared, err)
	}
	if err := shared.write("c2", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(shared.Bundle); !bytes.Equal(bytes.TrimSpace(b), bytes.TrimSpace(cert)) {
		t.Errorf("bundle of an image without CAs:\n%s", b)
	}
	if _, err := trustFor(root, "c3", "absent"); err == nil || !strings.Contains(err.Error(), "has no egress CA") {
		t.Errorf("sharing a filter without a CA: %v", err)
	}
}

// TestImageCAs: the image's CA bundle is read inside its root: a link
// cannot make it read the host's files.
func TestImageCAs(t *testing.T) {
	rootfs := t.TempDir()
	host := filepath.Join(t.TempDir(), "host-secret.pem")
	mkfile(t, host, "HOST SECRET")
	link := filepath.Join(rootfs, "etc/ssl/certs/ca-certificates.crt")
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(host, link); err != nil {
		t.Fatal(err)
	}
	mkfile(t, filepath.Join(rootfs, "etc/ssl/cert.pem"), "IMAGE CA")
	got, err := imageCAs(rootfs)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "IMAGE CA" {
		t.Errorf("imageCAs read %q, want the image's own third choice", got)
	}
	// A directory where a bundle is expected is refused, not skipped.
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc/ssl/certs/ca-certificates.crt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := imageCAs(dir); err == nil {
		t.Error("a directory was read as a CA bundle")
	}
}

func mkfile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
