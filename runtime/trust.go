package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/clawrun/clawrun/egress/inspect"
	"github.com/clawrun/clawrun/runtime/confinespec"
)

// The container's egress CA, in its state dir (root-only, outside every
// container): the key stays there, for the filter; the certificate and
// the trust bundle are bind-mounted read-only into the container.
const (
	egressCACertFile = "egress-ca.pem"
	egressCAKeyFile  = "egress-ca.key"
	egressBundleFile = "egress-ca-bundle.pem"
)

// egressCAValidity is how long a container's CA and its leaves are
// valid: nearly the most a client accepts of a leaf (398 days), so that
// no running container outlives it in practice.
const egressCAValidity = 397 * 24 * time.Hour

// imageCABundles are where images keep their system CAs (Debian and
// Alpine, Fedora and RHEL, and a link some images have): the first that
// holds something is the base of the container's trust bundle.
var imageCABundles = []string{"etc/ssl/certs/ca-certificates.crt", "etc/pki/tls/certs/ca-bundle.crt", "etc/ssl/cert.pem"}

// maxImageCABundle bounds what is read of an image's CA bundle (a few
// hundred KiB in practice).
const maxImageCABundle = 8 << 20

// trustFiles are the files through which a container whose egress is
// inspected trusts the filter's CA.
type trustFiles struct {
	// CACert is the CA certificate: the container's own (MakeCA), or that
	// of the container whose filter it shares (a pod's sandbox).
	CACert string `json:"ca_cert"`
	// MakeCA: the container's own filter inspects, with a CA made at
	// create, whose key is CAKey.
	MakeCA bool   `json:"make_ca,omitempty"`
	CAKey  string `json:"ca_key,omitempty"`
	// Bundle is the container's trust bundle: its image's CAs and the CA.
	Bundle string `json:"bundle"`
}

// trustFor decides the trust files of container id (state dir stateDir)
// whose filter inspects: its own CA when it runs its own filter, else
// the CA of owner, whose filter it shares, which must have one.
func trustFor(root, id, owner string) (*trustFiles, error) {
	stateDir := filepath.Join(root, id)
	t := &trustFiles{Bundle: filepath.Join(stateDir, egressBundleFile)}
	if owner == "" {
		t.MakeCA = true
		t.CACert, t.CAKey = filepath.Join(stateDir, egressCACertFile), filepath.Join(stateDir, egressCAKeyFile)
		return t, nil
	}
	t.CACert = filepath.Join(root, owner, egressCACertFile)
	if _, err := os.Stat(t.CACert); err != nil {
		return nil, fmt.Errorf("network_policies: the filter of %s, whose network namespace this container joins, has no egress CA to inspect with: %w", owner, err)
	}
	return t, nil
}

// addTrust rewrites spec to trust the filter's CA through t.
func (t *trustFiles) addTrust(spec *specs.Spec) error {
	return confinespec.AddTrust(spec, confinespec.Trust{Bundle: t.Bundle, CA: t.CACert})
}

// write makes the files of t at create, once the state dir exists: the CA
// when the container's own filter inspects (its key mode 0600, never in
// the bundle), then the trust bundle from the image's own CAs in rootfs.
// Nothing is replaced, and no link is followed.
func (t *trustFiles) write(id, rootfs string) error {
	if t.MakeCA {
		if err := makeEgressCA(id, t.CACert, t.CAKey); err != nil {
			return err
		}
	}
	caPEM, err := os.ReadFile(t.CACert)
	if err != nil {
		return fmt.Errorf("egress CA: %w", err)
	}
	system, err := imageCAs(rootfs)
	if err != nil {
		return err
	}
	bundle := append(system, '\n')
	return writeNewFile(t.Bundle, append(bundle, caPEM...), 0o644)
}

// makeEgressCA makes the container's CA and writes its certificate and
// key.
func makeEgressCA(id, certPath, keyPath string) error {
	name := id
	if len(name) > 12 {
		name = name[:12]
	}
	ca, err := inspect.NewCA("clawrun egress CA "+name, egressCAValidity)
	if err != nil {
		return fmt.Errorf("egress CA: %w", err)
	}
	if err := writeNewFile(certPath, ca.CertPEM(), 0o644); err != nil {
		return err
	}
	if err := ca.WriteKeyFile(keyPath); err != nil {
		return fmt.Errorf("egress CA: %w", err)
	}
	return nil
}

// writeNewFile writes data to a file that must not exist yet
// (O_EXCL|O_NOFOLLOW: nothing planted at path receives it).
func writeNewFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// imageCAs returns the image's own system CAs: the first of
// imageCABundles in rootfs that is a regular file with something in it,
// read inside the rootfs (RESOLVE_IN_ROOT: a link cannot point the read
// at the host's files); empty when the image has none.
func imageCAs(rootfs string) ([]byte, error) {
	for _, rel := range imageCABundles {
		data, err := readInRootfs(rootfs, rel)
		if err != nil {
			return nil, fmt.Errorf("egress CA: the image's /%s: %w", rel, err)
		}
		if len(bytes.TrimSpace(data)) > 0 {
			return data, nil
		}
	}
	return nil, nil
}

// readInRootfs reads rel inside rootfs if it is a regular file (at most
// maxImageCABundle bytes); nothing when it does not exist.
func readInRootfs(rootfs, rel string) ([]byte, error) {
	f, err := openInRootfs(rootfs, rel) // /dev/null when missing
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxImageCABundle+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxImageCABundle {
		return nil, errors.New("larger than 8 MiB")
	}
	return data, nil
}

// inspectEgress makes a container whose filter inspects some endpoint
// (or serves inference.local) trust the filter's CA (see trustFor): its own filter's, which gets the
// CA's files, or that of the filter it shares, which enforces the same
// rules (sharedFilter checked).
func (c *confinement) inspectEgress(spec *specs.Spec, root, id string) error {
	routesInference := c.Egress != nil && c.Egress.Inference != nil
	if !c.Plan.Inspects() && !routesInference {
		return nil
	}
	t, err := trustFor(root, id, c.SharedFilter)
	if err != nil {
		return err
	}
	c.Trust = t
	if c.Egress != nil {
		c.Egress.CACert, c.Egress.CAKey = t.CACert, t.CAKey
	}
	return t.addTrust(spec)
}
