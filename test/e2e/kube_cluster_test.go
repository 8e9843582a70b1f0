package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A single-node Kubernetes cluster on loopback: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and a kubelet driving the CRI of
// a private containerd 2.2.9 configured as TestContainerd configures it
// (contrib/containerd/config-v3.toml: the runtime handler "clawrun"). The
// components are those test/e2e/kube-setup.sh builds ($KUBE_TOOLS, or
// $E2E_TOOLS/kube where setup.sh links them).

const (
	kubeVersion = "v1.37.2"
	// The node's name: the API server reaches the kubelet (exec, logs)
	// by its Hostname address, and "localhost" keeps that on loopback.
	kubeNode = "localhost"
)

// kubeletSysctls are the kernel settings the kubelet sets at start-up
// (vm.overcommit_memory=1, kernel.panic_on_oops=1, ...): put back when it
// stops.
var kubeletSysctls = []string{
	"/proc/sys/vm/overcommit_memory", "/proc/sys/vm/panic_on_oom", "/proc/sys/kernel/panic",
	"/proc/sys/kernel/panic_on_oops", "/proc/sys/kernel/keys/root_maxkeys", "/proc/sys/kernel/keys/root_maxbytes",
}

// kubeContainerLogs is where the kubelet links every container's log
// (a constant of the kubelet, not a setting).
const kubeContainerLogs = "/var/log/containers"

type kubeCluster struct {
	dir        string // certificates, configs, etcd's data, the kubelet's root, logs
	bin        string // the components
	f          *fakeNet
	c          *ctrd
	kubeconfig string      // the admin's
	admin      *tls.Config // the admin's, for the API server
	podLogs    string      // the kubelet's podLogsDir
	apiURL     string
	daemons    []*daemon // in start order
	// What the kubelet changes on the host, to put back.
	sysctls       map[string]string
	newCgroups    []string
	newLogsDir    bool
	removeNetwork func()
}

// kubeTools is the directory of the components (bin/).
func kubeTools() string {
	if d := os.Getenv("KUBE_TOOLS"); d != "" {
		return d
	}
	return filepath.Join(theEnv.tools, "kube")
}

// startKubeCluster brings the cluster up; it is stopped, and the host
// checked for leftovers, when t ends.
func startKubeCluster(t *testing.T) *kubeCluster {
	t.Helper()
	return startKubeClusterWith(t, kubeOptions{name: "kube", clawrun: true})
}

// kubeOptions say which cluster to bring up.
type kubeOptions struct {
	name string // its private dir
	// clawrun: its containerd has clawrun's runtime handlers (else none: a
	// node clawrun is not installed on).
	clawrun bool
	extra   string // more of containerd's config (other handlers)
}

// startKubeClusterWith brings up the cluster o says.
func startKubeClusterWith(t *testing.T, o kubeOptions) *kubeCluster {
	t.Helper()
	name := o.name
	e := need(t, "containerd", "ctr", "containerd-shim-runc-v2", "crictl")
	bin := filepath.Join(kubeTools(), "bin")
	var missing []string
	for _, c := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl"} {
		if !isExecutable(filepath.Join(bin, c)) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("missing %v in %s: run test/e2e/kube-setup.sh (test/e2e/setup.sh runs it) and export KUBE_TOOLS", missing, bin)
	}
	start := time.Now()
	holdKubeletLock(t, start)
	k := &kubeCluster{dir: privateDir(t, name), bin: bin, f: theFakeNet(t)}
	k.podLogs = filepath.Join(k.dir, "pod-logs")
	t.Cleanup(func() { k.stop(t) })

	k.startContainerd(t, e, name+"-containerd", o)
	etcdURL := k.startEtcd(t)
	pki := k.writePKI(t)
	k.startAPIServer(t, pki, etcdURL)
	step(t, start, "etcd and kube-apiserver %s up (%s)", kubeVersion, k.apiURL)
	k.startControllers(t, pki)
	k.startKubelet(t, pki)
	k.waitUsable(t)
	step(t, start, "cluster up: node %s Ready, service account and root CA published", kubeNode)
	return k
}

// kubeletLock is held by one cluster at a time on a host: every kubelet
// with the cgroupfs driver manages the same /kubepods cgroups and kills
// the pods in them it does not know (its "orphaned pod cgroups").
const kubeletLock = "/run/lock/clawrun-e2e-kubelet.lock"

// holdKubeletLock waits for kubeletLock and holds it until t's cluster has
// stopped (cleanups run last-registered first).
func holdKubeletLock(t *testing.T, start time.Time) {
	t.Helper()
	_ = os.MkdirAll(filepath.Dir(kubeletLock), 0o755)
	f, err := os.OpenFile(kubeletLock, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		step(t, start, "waiting for another test's cluster to stop (%s)", kubeletLock)
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { f.Close() })
}

// startContainerd starts the CRI runtime: a private containerd with the
// contrib runtime block (BinaryName: the clawrun wrapper with the tests'
// config) if o.clawrun, o.extra, a CNI bridge in the test block and the local
// images. Without clawrun, the handlers installed later keep their state
// where the installer's Root says.
func (k *kubeCluster) startContainerd(t *testing.T, e *env, name string, o kubeOptions) {
	t.Helper()
	dir := filepath.Join(e.work, name)
	runcRoot := filepath.Join(dir, "runc")
	config := containerdBaseV3(dir) + o.extra
	path := pathEnv(filepath.Join(e.tools, "bin"))
	if o.clawrun {
		block := renderRuntimeBlock(t, readRepoFile(t, "contrib/containerd/config-v3.toml"), k.f.wrapperBin(), runcRoot, "'")
		config += "\n# contrib/containerd/config-v3.toml, rendered\n" + block
		path = pathEnv(k.f.wrapper, e.binDir, filepath.Join(e.tools, "bin"))
	} else {
		runcRoot = clawrunShimRoot
	}
	k.c = startContainerd(t, name, toolPath("containerd"), config, path)
	k.c.runcRoot = runcRoot
	k.daemons = append(k.daemons, k.c.d)
	k.removeNetwork = k.c.criReady(t, k.f, "clawrun-e2e-kube", "cle2ekb")
}

// restartContainerd restarts containerd with the config file as it is
// now (as a node's service manager restarts it): the shims, hence the
// pods' containers, go on running.
func (k *kubeCluster) restartContainerd(t *testing.T) {
	t.Helper()
	old := k.c.d
	if err := old.stop(30 * time.Second); err != nil {
		t.Error(err)
	}
	d := startDaemon(t, old.name, old.log, k.c.env, old.cmd.Path, "--config", k.c.config)
	for i := range k.daemons {
		if k.daemons[i] == old {
			k.daemons[i] = d
		}
	}
	k.c.d = d
	waitSocket(t, d, k.c.sock, time.Minute)
}

// root is where clawrun keeps the state of the pods' containers.
func (k *kubeCluster) root() string { return filepath.Join(k.c.runcRoot, "k8s.io") }

func (k *kubeCluster) startEtcd(t *testing.T) string {
	t.Helper()
	ports := freePorts(t, 2)
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	d := k.start(t, "etcd",
		"--name=e2e", "--data-dir="+filepath.Join(k.dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer, "--initial-cluster=e2e="+peer,
		// A throw-away store: no fsync on a disk other tests share.
		"--unsafe-no-fsync", "--log-level=warn")
	k.waitHTTP(t, d, client+"/health", nil, `"health":"true"`, time.Minute)
	return client
}

// kubePKI is the cluster's certificate authority and the files it issued.
type kubePKI struct {
	ca, saKey, saPub string
	certs            map[string][2]string // name -> certificate, key
}

func (p *kubePKI) cert(name string) string { return p.certs[name][0] }
func (p *kubePKI) key(name string) string  { return p.certs[name][1] }

// writePKI makes a CA, the serving certificates of the API server and the
// kubelet, a client certificate for each component and the admin, and the
// service-account signing key pair.
func (k *kubeCluster) writePKI(t *testing.T) *kubePKI {
	t.Helper()
	dir := filepath.Join(k.dir, "pki")
	ca, caKey := newCA(t)
	p := &kubePKI{ca: filepath.Join(dir, "ca.crt"), saKey: filepath.Join(dir, "sa.key"), saPub: filepath.Join(dir, "sa.pub"), certs: map[string][2]string{}}
	writeFile(t, p.ca, pemBlock("CERTIFICATE", ca.Raw), 0o644)
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, c := range []certSpec{
		{name: "apiserver", cn: "kube-apiserver", server: true, ips: append(loopback, k.serviceIP()),
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}},
		{name: "kubelet-serving", cn: "system:node:" + kubeNode, server: true, ips: loopback, dns: []string{kubeNode}},
		{name: "admin", cn: "clawrun-e2e-admin", orgs: []string{"system:masters"}},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}},
		{name: "controller-manager", cn: "system:kube-controller-manager"},
		{name: "scheduler", cn: "system:kube-scheduler"},
		{name: "kubelet", cn: "system:node:" + kubeNode, orgs: []string{"system:nodes"}},
	} {
		crt, key := issueCert(t, ca, caKey, c)
		p.certs[c.name] = [2]string{filepath.Join(dir, c.name+".crt"), filepath.Join(dir, c.name+".key")}
		writeFile(t, p.cert(c.name), crt, 0o644)
		writeFile(t, p.key(c.name), key, 0o600)
	}
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.saKey, pemPKCS8(t, sa), 0o600)
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.saPub, pemBlock("PUBLIC KEY", pub), 0o644)
	return p
}

// serviceRange is the Service range: addresses the API server hands out
// and nothing routes (no kube-proxy), a /24 of the fake internet's block.
func (k *kubeCluster) serviceRange() string { return k.f.Prefix(netKubeServices) }

// serviceIP is the first address of the Service range: the "kubernetes"
// Service's, which the API server's certificate names.
func (k *kubeCluster) serviceIP() net.IP { return net.ParseIP(k.f.IP(netKubeServices, 1)) }

type certSpec struct {
	name, cn string
	orgs     []string
	dns      []string
	ips      []net.IP
	server   bool
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clawrun-e2e-kube-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return ca, key
}

// issueCert returns a certificate signed by ca and its key, both PEM.
func issueCert(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, c certSpec) (crt, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	usage := x509.ExtKeyUsageClientAuth
	if c.server {
		usage = x509.ExtKeyUsageServerAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: c.cn, Organization: c.orgs},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: c.dns, IPAddresses: c.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("CERTIFICATE", der), pemPKCS8(t, k)
}

func pemBlock(kind string, der []byte) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}))
}

func pemPKCS8(t *testing.T, key *ecdsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("PRIVATE KEY", der)
}

// writeKubeconfig writes the kubeconfig of a component (its client
// certificate) and returns its path.
func (k *kubeCluster) writeKubeconfig(t *testing.T, p *kubePKI, name string) string {
	t.Helper()
	path := filepath.Join(k.dir, name+".kubeconfig")
	writeJSON(t, path, map[string]any{
		"apiVersion":      "v1",
		"kind":            "Config",
		"clusters":        []any{map[string]any{"name": "e2e", "cluster": map[string]any{"server": k.apiURL, "certificate-authority": p.ca}}},
		"users":           []any{map[string]any{"name": name, "user": map[string]any{"client-certificate": p.cert(name), "client-key": p.key(name)}}},
		"contexts":        []any{map[string]any{"name": "e2e", "context": map[string]any{"cluster": "e2e", "user": name}}},
		"current-context": "e2e",
	})
	return path
}

func (k *kubeCluster) startAPIServer(t *testing.T, p *kubePKI, etcdURL string) {
	t.Helper()
	port := freePorts(t, 1)[0]
	k.apiURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	d := k.start(t, "kube-apiserver",
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port), "--advertise-address=127.0.0.1",
		"--cert-dir="+filepath.Join(k.dir, "apiserver-certs"),
		"--tls-cert-file="+p.cert("apiserver"), "--tls-private-key-file="+p.key("apiserver"),
		"--client-ca-file="+p.ca,
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range="+k.serviceRange(),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+p.saPub, "--service-account-signing-key-file="+p.saKey,
		"--kubelet-client-certificate="+p.cert("apiserver-kubelet-client"), "--kubelet-client-key="+p.key("apiserver-kubelet-client"),
		"--kubelet-certificate-authority="+p.ca,
		"--kubelet-preferred-address-types=Hostname",
		// The kubernetes Service's endpoint would be 127.0.0.1, which
		// Endpoints refuse: nothing in these pods calls the API anyway.
		"--endpoint-reconciler-type=none",
		// As kubeadm's: node agents (the installer DaemonSet) run
		// privileged.
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false", "--profiling=false")
	admin := tlsClientConfig(t, p, "admin")
	k.admin = admin
	k.waitHTTP(t, d, k.apiURL+"/readyz", admin, "ok", 2*time.Minute)
	k.kubeconfig = k.writeKubeconfig(t, p, "admin")
}

// tlsClientConfig trusts the cluster's CA and presents name's certificate.
func tlsClientConfig(t *testing.T, p *kubePKI, name string) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(p.cert(name), p.key(name))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	data, err := os.ReadFile(p.ca)
	if err != nil || !pool.AppendCertsFromPEM(data) {
		t.Fatalf("the cluster's CA %s: %v", p.ca, err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}
}

// startControllers starts the controller manager (the service-account
// and token controllers, the root CA publisher, the garbage collector...)
// and the scheduler, neither serving anything.
func (k *kubeCluster) startControllers(t *testing.T, p *kubePKI) {
	t.Helper()
	k.start(t, "kube-controller-manager",
		"--kubeconfig="+k.writeKubeconfig(t, p, "controller-manager"),
		"--service-account-private-key-file="+p.saKey, "--root-ca-file="+p.ca,
		// Each controller as its own service account, with the roles
		// RBAC bootstraps for it (as kubeadm runs it).
		"--use-service-account-credentials=true",
		"--leader-elect=false", "--secure-port=0")
	k.start(t, "kube-scheduler",
		"--kubeconfig="+k.writeKubeconfig(t, p, "scheduler"),
		"--leader-elect=false", "--secure-port=0")
}

// startKubelet starts the kubelet on containerd's CRI socket, with the
// cgroupfs driver (containerd's runc runtimes use it: SystemdCgroup is
// off), serving on loopback only, its every directory under the private
// dir but the one it cannot be told (kubeContainerLogs), and the fake
// internet's resolver as the cluster DNS.
func (k *kubeCluster) startKubelet(t *testing.T, p *kubePKI) {
	t.Helper()
	ports := freePorts(t, 1)
	resolv := filepath.Join(k.dir, "kubelet-resolv.conf")
	writeFile(t, resolv, "nameserver "+k.f.Addr()+"\n", 0o644)
	config := filepath.Join(k.dir, "kubelet-config.json")
	endpoint := "unix://" + k.c.sock
	writeJSON(t, config, map[string]any{
		"apiVersion":               "kubelet.config.k8s.io/v1beta1",
		"kind":                     "KubeletConfiguration",
		"address":                  "127.0.0.1",
		"port":                     ports[0],
		"readOnlyPort":             0,
		"healthzPort":              0,
		"tlsCertFile":              p.cert("kubelet-serving"),
		"tlsPrivateKeyFile":        p.key("kubelet-serving"),
		"authentication":           map[string]any{"anonymous": map[string]any{"enabled": false}, "webhook": map[string]any{"enabled": true}, "x509": map[string]any{"clientCAFile": p.ca}},
		"authorization":            map[string]any{"mode": "Webhook"},
		"containerRuntimeEndpoint": endpoint,
		"imageServiceEndpoint":     endpoint,
		"cgroupDriver":             "cgroupfs",
		// This machine's cgroups are hybrid (v1 controllers) and it has
		// swap settings of its own: neither is what these tests are about.
		"failCgroupV1":  false,
		"failSwapOn":    false,
		"clusterDNS":    []string{k.f.Addr()},
		"clusterDomain": "cluster.local",
		"resolvConf":    resolv,
		"podLogsDir":    k.podLogs,
		// The kubelet's own iptables chains (KUBE-FIREWALL): not on a
		// machine other tests share.
		"makeIPTablesUtilChains": false,
		// Never garbage-collect the local images (no registry to pull from).
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"staticPodPath":               "",
		"volumePluginDir":             filepath.Join(k.dir, "volume-plugins"),
		"nodeStatusUpdateFrequency":   "2s",
	})
	k.sysctls = readSysctls(kubeletSysctls)
	k.newCgroups = missingCgroups([]string{"kubepods"})
	k.newLogsDir = !exists(kubeContainerLogs)
	k.start(t, "kubelet",
		"--config="+config,
		"--kubeconfig="+k.writeKubeconfig(t, p, "kubelet"),
		"--root-dir="+filepath.Join(k.dir, "kubelet"),
		"--cert-dir="+filepath.Join(k.dir, "kubelet-certs"),
		"--hostname-override="+kubeNode, "--v=1")
}

// waitUsable waits until pods can be created: the node Ready (its
// runtime's network configured), the default ServiceAccount and the
// root CA ConfigMap that every pod's token volume needs.
func (k *kubeCluster) waitUsable(t *testing.T) {
	t.Helper()
	for _, w := range []struct{ what, jsonpath, want string }{
		{"node/" + kubeNode, `{.status.conditions[?(@.type=="Ready")].status}`, "True"},
		{"serviceaccount/default", "{.metadata.name}", "default"},
		{"configmap/kube-root-ca.crt", "{.metadata.name}", "kube-root-ca.crt"},
	} {
		var last result
		if !waitFor(2*time.Minute, func() bool {
			last = k.kubectl("get", w.what, "-o", "jsonpath="+w.jsonpath)
			return last.code == 0 && strings.TrimSpace(last.stdout) == w.want
		}) {
			t.Fatalf("%s: not %s within 2 minutes: %v\n%s", w.what, w.want, last, k.logTails(20))
		}
	}
}

// start starts a component with its log in the private dir.
func (k *kubeCluster) start(t *testing.T, name string, args ...string) *daemon {
	t.Helper()
	d := startDaemon(t, name, filepath.Join(k.dir, name+".log"), []string{pathEnv(k.bin), "HOME=" + k.dir}, filepath.Join(k.bin, name), args...)
	k.daemons = append(k.daemons, d)
	return d
}

// waitHTTP polls url until it answers 200 with a body containing want.
func (k *kubeCluster) waitHTTP(t *testing.T, d *daemon, url string, tlsConfig *tls.Config, want string, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	defer client.CloseIdleConnections()
	var last string
	ok := waitFor(timeout, func() bool {
		if !d.running() {
			return true
		}
		resp, err := client.Get(url)
		if err != nil {
			last = err.Error()
			return false
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		last = fmt.Sprintf("%s: %s", resp.Status, body)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), want)
	})
	if !d.running() {
		t.Fatalf("%s exited:\n%s", d.name, d.logTail(30))
	}
	if !ok {
		t.Fatalf("%s: %s did not answer %q within %v (last: %s):\n%s", d.name, url, want, timeout, last, d.logTail(30))
	}
}

// freePorts returns n TCP ports of 127.0.0.1 that nothing listens on.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// kubectl runs kubectl as the cluster's admin.
func (k *kubeCluster) kubectl(args ...string) result {
	return k.kubectlIn("", args...)
}

// kubectlIn runs kubectl with stdin.
func (k *kubeCluster) kubectlIn(stdin string, args ...string) result {
	return runIn(cmdOpts{env: []string{pathEnv(k.bin), "HOME=" + k.dir}, stdin: stdin, timeout: 3 * time.Minute},
		filepath.Join(k.bin, "kubectl"), append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
}

// apply creates or updates an object given as a Go value.
func (k *kubeCluster) apply(t *testing.T, obj any) {
	t.Helper()
	data, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	must(t, k.kubectlIn(string(data), "apply", "-f", "-"))
}

// logTails is the end of every component's log.
func (k *kubeCluster) logTails(n int) string {
	var b strings.Builder
	for _, d := range k.daemons {
		fmt.Fprintf(&b, "--- %s (%s)\n", d.name, d.log)
		for _, line := range strings.Split(d.logTail(n), "\n") {
			if len(line) > 300 {
				line = line[:300] + "..."
			}
			fmt.Fprintln(&b, line)
		}
	}
	return b.String()
}

// stop deletes the pods left, stops the components (the kubelet first,
// containerd last) and checks that nothing of the cluster is left on the
// host: processes, mounts, network namespaces, cgroups, the kubelet's
// settings and log links.
func (k *kubeCluster) stop(t *testing.T) {
	t.Helper()
	start := time.Now()
	if k.kubeconfig != "" && k.running("kube-apiserver") && k.running("kubelet") {
		// The kubelet stops them as a node does (their grace periods).
		if r := k.kubectl("delete", "pods", "--all", "--wait", "--timeout=90s"); r.code != 0 {
			t.Errorf("deleting the pods left: %v", r)
		}
		// Their volumes (token mounts) go after the API objects.
		if !waitFor(time.Minute, func() bool { return len(k.podDirs()) == 0 }) {
			t.Errorf("the kubelet has not removed the directories of deleted pods: %v", k.podDirs())
		}
	}
	for i := len(k.daemons) - 1; i >= 0; i-- {
		d := k.daemons[i]
		if k.c != nil && d == k.c.d {
			// The sandboxes the kubelet had not garbage-collected yet.
			for _, id := range strings.Fields(k.c.crictl("pods", "-q").stdout) {
				_ = k.c.crictl("stopp", id)
				_ = k.c.crictl("rmp", "-f", id)
			}
			if exists(k.root()) {
				if ids := listIDs(t, k.root()); len(ids) > 0 {
					t.Errorf("clawrun still lists %v once every pod is removed", ids)
				}
			}
			if left := mountsUnder(k.c.dir); len(left) > 0 {
				t.Errorf("mounts left once every pod is removed: %v", left)
			}
			k.c.stop(t)
			continue
		}
		if err := d.stop(30 * time.Second); err != nil {
			t.Error(err)
		}
		if d.name == "kubelet" {
			// The kubelet makes its root dir a mount point of its own
			// (bind-mounted onto itself, shared) and leaves it.
			_ = unix.Unmount(filepath.Join(k.dir, "kubelet"), unix.MNT_DETACH)
			k.restoreHost(t)
		}
	}
	if k.removeNetwork != nil {
		k.removeNetwork()
	}
	killLeftovers(t, k.dir)
	if left := mountsUnder(k.dir); len(left) > 0 {
		t.Errorf("mounts of the kubelet left after it stopped: %v", left)
		unmountUnder(k.dir)
	}
	k.removeKubeCgroups(t)
	t.Logf("[%5.1fs] cluster stopped and removed", time.Since(start).Seconds())
}

func (k *kubeCluster) running(name string) bool {
	for _, d := range k.daemons {
		if d.name == name {
			return d.running()
		}
	}
	return false
}

// restoreHost puts back what the kubelet changed on the host: its kernel
// settings, the cgroups it made (once their pods are gone) and its log
// links.
func (k *kubeCluster) restoreHost(t *testing.T) {
	t.Helper()
	restoreSysctls(k.sysctls)
	for p, v := range readSysctls(kubeletSysctls) {
		if v != k.sysctls[p] {
			t.Errorf("%s is %s after the kubelet stopped, was %s", p, v, k.sysctls[p])
		}
	}
	if k.newLogsDir || exists(kubeContainerLogs) {
		links, _ := filepath.Glob(filepath.Join(kubeContainerLogs, "*"))
		for _, l := range links {
			if target, err := os.Readlink(l); err == nil && strings.HasPrefix(target, k.podLogs+"/") {
				_ = os.Remove(l)
			}
		}
		if k.newLogsDir {
			if left := removeEmptyTree(kubeContainerLogs); len(left) > 0 {
				t.Errorf("left in %s: %v", kubeContainerLogs, left)
			}
		}
	}
}

// removeKubeCgroups removes the cgroups the kubelet made, once containerd
// has stopped every container in them.
func (k *kubeCluster) removeKubeCgroups(t *testing.T) {
	t.Helper()
	removeCgroupParents(k.newCgroups)
	for _, p := range k.newCgroups {
		if exists(p) {
			t.Errorf("cgroup %s is left after the cluster stopped", p)
		}
	}
}

// podDirs lists the kubelet's pod directories (volumes, mounts).
func (k *kubeCluster) podDirs() []string {
	dirs, _ := filepath.Glob(filepath.Join(k.dir, "kubelet", "pods", "*"))
	return dirs
}
