package integration

// HTTPS inspection: an endpoint with request fields (access, rules, path)
// is inspected on TLS: the filter terminates it with the container's own
// CA, decides every request, and sends the allowed ones to the upstream
// over TLS it verifies against the configured roots.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/clawrun/clawrun/test/fakenet"
)

// sawHTTPS matches a request the HTTPS servers received.
func sawHTTPS(method, host, path string) seen {
	return seen{fmt.Sprintf("an HTTPS request %s %s%s", method, host, path), func(e fakenet.Event) bool {
		return e.Kind == "https" && e.Data == method && strings.HasPrefix(e.Name, host) && (path == "" || e.Path == path)
	}}
}

// anyHTTPS matches every request the HTTPS servers received.
var anyHTTPS = seen{"an HTTPS request", fakenet.OfKind("https")}

// inspectConfig is the runtime's config for these tests: the fake
// internet's, with the tests' CA as the roots inspected upstreams must
// verify against.
func (fn *fakeNet) inspectConfig(t *testing.T) string {
	t.Helper()
	ca := writeTemp(t, "upstream-ca.pem", string(fn.CAPEM()))
	return writeTemp(t, "config.yaml", fn.egressYAML()+"  upstream_ca_file: "+ca+"\n")
}

// startInspected starts a container under doc with the inspection config.
func (fn *fakeNet) startInspected(t *testing.T, r *rtest, doc string) *ectr {
	t.Helper()
	b := fn.egressBundle(r, withInline(doc))
	return fn.startAs(r, newID(t), b, "--config", fn.inspectConfig(t))
}

// readOnlyDoc: allowed.test read-only on the HTTPS ports, other.test on
// them with no request fields (spliced).
const readOnlyDoc = `  api:
    endpoints:
      - host: allowed.test
        ports: [8443, 8444]
        protocol: rest
        access: read-only
  plain:
    endpoints:
      - host: other.test
        port: 8443
`

// inspectRecord is a request's line of the decision log.
type inspectRecord struct {
	Protocol, Host, Decision, Reason, Rule, Method, Path, Detail string
	Status                                                       int
	Inspected                                                    bool
}

// requestRecords are the container's decision records of protocol
// https (requests of inspected connections), tls and http.
func (c *ectr) requestRecords() []inspectRecord {
	c.t.Helper()
	data, err := os.ReadFile(c.log)
	if err != nil {
		c.t.Fatal(err)
	}
	var out []inspectRecord
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	for sc.Scan() {
		var rec inspectRecord
		if json.Unmarshal(sc.Bytes(), &rec) == nil && (rec.Protocol == "https" || rec.Protocol == "tls" || rec.Protocol == "http") {
			out = append(out, rec)
		}
	}
	return out
}

// waitRequest waits for a request's record.
func (c *ectr) waitRequest(method, path string) inspectRecord {
	c.t.Helper()
	return c.waitRecord(func(rec inspectRecord) bool {
		return rec.Protocol == "https" && rec.Method == method && rec.Path == path
	})
}

// waitRecord waits for a record that match accepts.
func (c *ectr) waitRecord(match func(inspectRecord) bool) inspectRecord {
	c.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs := c.requestRecords()
		for _, rec := range recs {
			if match(rec) {
				return rec
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("no such decision record: %+v", recs)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// wantParts checks the probe's line part by part (" | " between them).
func wantParts(t *testing.T, line string, parts ...string) {
	t.Helper()
	got := strings.Split(line, " | ")
	if len(got) != len(parts) {
		t.Errorf("probe: got %q, want %d parts %q", line, len(parts), parts)
		return
	}
	for i, p := range parts {
		if !strings.Contains(got[i], p) {
			t.Errorf("probe part %d: got %q, want %q (line %q)", i, got[i], p, line)
		}
	}
}

// TestEgressInspectReadOnly: on an inspected read-only endpoint, over
// HTTP/1.1 and h2, a GET reaches the upstream (which the client sees
// through a certificate of the container's CA, trusted by its
// SSL_CERT_FILE), a POST on the same connection gets 403 and never reaches
// it, and the next request on that connection is served. Each request is
// a decision record, and `clawrun audit` shows the refused one's method,
// path and rule.
func TestEgressInspectReadOnly(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startInspected(t, r, policyDoc(readOnlyDoc))
	for _, proto := range []string{"h1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			get1, post, get2 := "/"+proto+"/a", "/"+proto+"/b", "/"+proto+"/c"
			line := c.check(echeck{name: proto + ": GET, POST, GET on one connection",
				args:  []string{"https", "allowed.test", "8443", "allowed.test", proto, "allowed.test", "GET:" + get1, "POST:" + post, "GET:" + get2},
				out:   `OK issuer="clawrun egress CA `,
				saw:   []seen{sawHTTPS("GET", "allowed.test", get1), sawHTTPS("GET", "allowed.test", get2)},
				never: []seen{sawHTTPS("POST", "allowed.test", "")}})
			wantProto := map[string]string{"h1": "proto=HTTP/1.1", "h2": "proto=HTTP/2.0"}[proto]
			if !strings.Contains(line, wantProto) {
				t.Errorf("probe: %q, want %s", line, wantProto)
			}
			wantParts(t, line, "200 GET "+get1+" conn=1", "403 POST "+post+" conn=1", "200 GET "+get2+" conn=1")
			deny := c.waitRequest("POST", post)
			if deny.Decision != "deny" || deny.Reason != "request" || deny.Rule != "api" || deny.Status != 403 || deny.Host != "allowed.test" {
				t.Errorf("the POST's record: %+v", deny)
			}
			if allow := c.waitRequest("GET", get1); allow.Decision != "allow" || allow.Status != 200 || allow.Rule != "api" {
				t.Errorf("the GET's record: %+v", allow)
			}
		})
	}
	// What audit shows of the refused request.
	res := r.ok(append(fn.globals(), "audit", "--denied", c.id)...)
	if !strings.Contains(res.Stdout, "allowed.test:8443 POST /h1/b") || !strings.Contains(res.Stdout, "request (api)") {
		t.Errorf("clawrun audit --denied does not show the refused POST's method, path and rule:\n%s", res.Stdout)
	}
}

// TestEgressInspectMethodOverride: on a read-only endpoint, a GET that
// carries X-HTTP-Method-Override: DELETE (which many server frameworks
// run as a DELETE) is refused and never reaches the upstream, over
// HTTP/1.1 and h2; the GET before it on the same connection is served.
func TestEgressInspectMethodOverride(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startInspected(t, r, policyDoc(readOnlyDoc))
	for _, proto := range []string{"h1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			plain, overridden := "/"+proto+"/plain", "/"+proto+"/overridden"
			line := c.check(echeck{name: proto + ": GET, then GET overridden to DELETE",
				args: []string{"https", "allowed.test", "8443", "allowed.test", proto, "allowed.test",
					"GET:" + plain, "header:X-HTTP-Method-Override=DELETE", "GET:" + overridden},
				out:   `OK issuer="clawrun egress CA `,
				saw:   []seen{sawHTTPS("GET", "allowed.test", plain)},
				never: []seen{sawHTTPS("GET", "allowed.test", overridden), sawHTTPS("DELETE", "allowed.test", "")}})
			wantParts(t, line, "200 GET "+plain, "403 GET "+overridden)
			if deny := c.waitRequest("GET", overridden); deny.Decision != "deny" || deny.Reason != "method_override" || deny.Status != 403 {
				t.Errorf("the overridden GET's record: %+v", deny)
			}
		})
	}
}

// TestEgressInspectMCP: on an inspected MCP endpoint, a tools/call of a
// tool the rules allow reaches the server; one of another tool, on the
// same connection, is answered by the filter with a JSON-RPC error and
// never reaches it; the record names the refused call.
func TestEgressInspectMCP(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startInspected(t, r, policyDoc(`  tools:
    endpoints:
      - host: allowed.test
        port: 8443
        protocol: mcp
        rules:
          - allow: {method: initialize}
          - allow: {method: tools/call, tool: "read_*"}
`))
	call := func(tool string) string {
		return `body:{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"` + tool + `","arguments":{}}}`
	}
	line := c.check(echeck{name: "an allowed tool, then a refused one",
		args: []string{"https", "allowed.test", "8443", "allowed.test", "h1", "allowed.test",
			"header:Content-Type=application/json", call("read_file"), "POST:/mcp/read", call("delete_file"), "POST:/mcp/delete"},
		out:   `OK issuer="clawrun egress CA `,
		saw:   []seen{sawHTTPS("POST", "allowed.test", "/mcp/read")},
		never: []seen{sawHTTPS("POST", "allowed.test", "/mcp/delete")}})
	wantParts(t, line, "200 POST /mcp/read conn=1", "POST /mcp/delete conn=1")
	rec := c.waitRequest("POST", "/mcp/delete")
	if rec.Decision != "deny" || rec.Reason != "rpc" || rec.Rule != "tools" {
		t.Errorf("the refused call's record: %+v", rec)
	}
	if allow := c.waitRequest("POST", "/mcp/read"); allow.Decision != "allow" {
		t.Errorf("the allowed call's record: %+v", allow)
	}
}

// TestEgressInspectFronting: inside an inspected connection, a request
// for another name than the SNI (domain fronting) is refused (421) and
// never reaches any upstream, though the name is allowed on its own.
func TestEgressInspectFronting(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startInspected(t, r, policyDoc(readOnlyDoc))
	line := c.check(echeck{name: "Host other.test inside TLS for allowed.test",
		args:  []string{"https", "allowed.test", "8443", "allowed.test", "h1", "other.test", "GET:/front"},
		out:   `OK issuer="clawrun egress CA `,
		never: []seen{anyHTTPS}})
	wantParts(t, line, "421 GET /front")
	// The engine refuses it before it reads it as a request of the
	// connection: its record has the method and the reason.
	if rec := c.waitRecord(func(rec inspectRecord) bool { return rec.Protocol == "https" && rec.Reason == "misdirected" }); rec.Decision != "deny" || rec.Method != "GET" || rec.Status != 421 {
		t.Errorf("record: %+v", rec)
	}
	// Positive control: the same request for the SNI's name goes out.
	c.check(echeck{name: "Host allowed.test",
		args: []string{"https", "allowed.test", "8443", "allowed.test", "h1", "allowed.test", "GET:/front"},
		out:  `OK issuer="clawrun egress CA `,
		saw:  []seen{sawHTTPS("GET", "allowed.test", "/front")}})
}

// TestEgressInspectUpstreamCert: an upstream whose certificate the
// configured roots do not verify gets no request: the client is answered
// 502 and the decision says upstream_cert.
func TestEgressInspectUpstreamCert(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startInspected(t, r, policyDoc(readOnlyDoc))
	line := c.check(echeck{name: "an upstream with an unsigned certificate",
		args:  []string{"https", "allowed.test", strconv.Itoa(portHTTPSBad), "allowed.test", "h1", "allowed.test", "GET:/bad"},
		out:   `OK issuer="clawrun egress CA `,
		never: []seen{anyHTTPS}})
	wantParts(t, line, "502 GET /bad")
	if rec := c.waitRequest("GET", "/bad"); rec.Decision != "deny" || rec.Reason != "upstream_cert" {
		t.Errorf("record: %+v", rec)
	}
	// Positive control: the upstream the roots verify.
	c.check(echeck{name: "an upstream the roots verify",
		args: []string{"https", "allowed.test", strconv.Itoa(portHTTPS), "allowed.test", "h1", "allowed.test", "GET:/good"},
		out:  `OK issuer="clawrun egress CA `,
		saw:  []seen{sawHTTPS("GET", "allowed.test", "/good")}})
}

// TestEgressInspectPassThrough: an endpoint without request fields is
// still spliced: the client sees the upstream's own certificate, not one
// of the container's CA, and the connection is not inspected, while an
// endpoint of the same container with request fields is.
func TestEgressInspectPassThrough(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startInspected(t, r, policyDoc(readOnlyDoc))
	line := c.check(echeck{name: "other.test, no request fields",
		args: []string{"https", "other.test", "8443", "other.test", "h1", "other.test", "POST:/x"},
		out:  fmt.Sprintf("OK issuer=%q ", fn.CA().Subject.CommonName),
		saw:  []seen{sawHTTPS("POST", "other.test", "/x")}})
	wantParts(t, line, "200 POST /x")
	// Beside it, in the same container, the inspected endpoint's client
	// sees a certificate of the container's CA.
	c.check(echeck{name: "allowed.test, inspected",
		args: []string{"https", "allowed.test", "8443", "allowed.test", "h1", "allowed.test", "GET:/y"},
		out:  `OK issuer="clawrun egress CA `,
		saw:  []seen{sawHTTPS("GET", "allowed.test", "/y")}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		var conn *inspectRecord
		for _, rec := range c.requestRecords() {
			if rec.Protocol == "tls" && rec.Host == "other.test" {
				conn = &rec
			}
			if rec.Protocol == "https" && rec.Host == "other.test" {
				t.Fatalf("a request of a spliced connection was inspected: %+v", rec)
			}
		}
		if conn != nil {
			if conn.Inspected || conn.Decision != "allow" {
				t.Errorf("connection record: %+v", *conn)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no record of the connection to other.test: %+v", c.requestRecords())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestEgressInspectCAKey: the container trusts its CA through files that
// hold no key; the key, in the state dir, is nowhere the container can
// read, as root: not in its root filesystem, its mounts, its environment,
// nor in /proc of any process it can see.
func TestEgressInspectCAKey(t *testing.T) {
	r, fn := egressRuntime(t)
	c := fn.startInspected(t, r, policyDoc(readOnlyDoc))
	key := c.statePath("egress-ca.key")
	// Positive controls: the key exists (the filter inspects with it), and
	// the container reads its trust files.
	st, err := os.Stat(key)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("the CA key %s: %v %v", key, st, err)
	}
	for _, f := range []string{"/etc/clawrun/ca-bundle.pem", "/etc/clawrun/ca.pem"} {
		if out := c.exec("sh", "-c", "grep -c 'BEGIN CERTIFICATE' "+f); out == "0" || strings.HasPrefix(out, "grep") {
			t.Errorf("%s in the container: %q", f, out)
		}
	}
	env := c.exec("sh", "-c", "echo $SSL_CERT_FILE $REQUESTS_CA_BUNDLE $CURL_CA_BUNDLE $GIT_SSL_CAINFO $NODE_EXTRA_CA_CERTS")
	if env != "/etc/clawrun/ca-bundle.pem /etc/clawrun/ca-bundle.pem /etc/clawrun/ca-bundle.pem /etc/clawrun/ca-bundle.pem /etc/clawrun/ca.pem" {
		t.Errorf("an exec'd process's trust variables: %q", env)
	}
	// The key's own path does not exist in the container.
	c.expect("ERR ENOENT", "read", key)
	// No file the container can read holds the key: its root
	// filesystem, its mounts, and every /proc entry of the processes it
	// can see (environ, cmdline; their open files and memory maps by
	// path). The key is searched by a line of its own PEM.
	pemKey, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	keyLine := strings.Split(string(pemKey), "\n")[1]
	scan := `grep -rlsF '` + keyLine + `' /etc /bin /sbin /usr /root /tmp /var /run /home /opt /srv /sandbox 2>/dev/null;` +
		`for p in /proc/[0-9]*; do grep -lsF '` + keyLine + `' $p/environ $p/cmdline; ls -l $p/fd 2>/dev/null | grep -s egress-ca.key; grep -s egress-ca.key $p/maps; done;` +
		`grep -s egress-ca.key /proc/self/mountinfo; echo scanned`
	if out := c.exec("sh", "-c", scan); out != "scanned" {
		t.Errorf("the container can read the CA key: %q", out)
	}
	// Positive control of the scan: it finds what is there.
	if out := c.exec("sh", "-c", "grep -lsF \"$(sed -n 2p /etc/clawrun/ca.pem)\" /etc/clawrun/*"); !strings.Contains(out, "/etc/clawrun/ca") {
		t.Errorf("the scan does not find the CA certificate's own line: %q", out)
	}
	mounts := c.exec("sh", "-c", "grep -c egress-ca /proc/self/mountinfo")
	if mounts != "2" {
		t.Errorf("mounts of the CA's files in the container: %q, want the bundle and the certificate", mounts)
	}
	// Nor does any process it can see belong to the filter.
	if out := c.exec("sh", "-c", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' ' | grep -c '__egres[s]'; true"); out != "0" {
		t.Errorf("the container sees the filter's processes: %q", out)
	}
	// Delete removes the CA with the container.
	r.ok(append(fn.globals(), "delete", "-f", c.id)...)
	if _, err := os.Stat(filepath.Dir(key)); !os.IsNotExist(err) {
		t.Errorf("the state dir with the CA key is still there after delete: %v", err)
	}
}

// TestEgressInspectBadUpstreamCAFile: egress.upstream_ca_file must hold
// certificates: a config whose file does not is refused at create,
// naming the field, and no container is left.
func TestEgressInspectBadUpstreamCAFile(t *testing.T) {
	r, fn := egressRuntime(t)
	notPEM := writeTemp(t, "not-a-ca.pem", "not a certificate\n")
	cfg := writeTemp(t, "config.yaml", fn.egressYAML()+"  upstream_ca_file: "+notPEM+"\n")
	id := newID(t)
	r.track(id)
	res := r.run("--config", cfg, "run", "-d", "--bundle", fn.egressBundle(r, withInline(policyDoc(readOnlyDoc))), id)
	if res.Code == 0 || !strings.Contains(res.Stderr, "egress.upstream_ca_file "+notPEM+": no PEM certificate in it") {
		t.Fatalf("create with an upstream_ca_file of no certificate:\n%s", res)
	}
	if _, err := os.Stat(filepath.Join(r.root, id)); !os.IsNotExist(err) {
		t.Errorf("the refused container's state dir is left: %v", err)
	}
}

// TestEgressInspectReload: `clawrun policy apply` re-decides inspected
// requests: a POST the first generation allows (read-write) is refused
// under the second (read-only), and never reaches the upstream; GET still
// goes out.
func TestEgressInspectReload(t *testing.T) {
	r, fn := egressRuntime(t)
	rw := strings.ReplaceAll(readOnlyDoc, "access: read-only", "access: read-write")
	c := fn.startInspected(t, r, policyDoc(rw))
	c.check(echeck{name: "generation 1 (read-write): POST",
		args: []string{"https", "allowed.test", "8443", "allowed.test", "h1", "allowed.test", "POST:/gen1"},
		out:  `OK issuer="clawrun egress CA `,
		saw:  []seen{sawHTTPS("POST", "allowed.test", "/gen1")}})
	r.ok(append(fn.globals(), "policy", "apply", c.id, writeTemp(t, "ro.yaml", policyDoc(readOnlyDoc)))...)
	line := c.check(echeck{name: "generation 2 (read-only): GET, POST",
		args:  []string{"https", "allowed.test", "8443", "allowed.test", "h1", "allowed.test", "GET:/gen2", "POST:/gen2"},
		out:   `OK issuer="clawrun egress CA `,
		saw:   []seen{sawHTTPS("GET", "allowed.test", "/gen2")},
		never: []seen{sawHTTPS("POST", "allowed.test", "/gen2")}})
	wantParts(t, line, "200 GET /gen2", "403 POST /gen2")
	if rec := c.waitRequest("POST", "/gen2"); rec.Decision != "deny" || rec.Reason != "request" {
		t.Errorf("record: %+v", rec)
	}
}

// TestEgressInspectPod: in a pod, the sandbox's filter inspects with its
// CA, and an application container trusts that CA through a bundle of
// its own (its state dir holds no key): its POST is refused, its GET goes
// out.
func TestEgressInspectPod(t *testing.T) {
	r, fn := egressRuntime(t)
	doc := policyDoc(readOnlyDoc)
	cfg := fn.inspectConfig(t)
	rn := fn.routedNet(t)
	sandbox := fn.startAs(r, newID(t), fn.egressBundle(r, withInline(doc), annotate("io.kubernetes.cri.container-type", "sandbox"), rn.inNet), "--config", cfg)
	app := fn.startAs(r, newID(t), fn.egressBundle(r, withInline(doc), annotate("io.kubernetes.cri.container-type", "container"), rn.inNet), "--config", cfg)
	app.log, app.filteredBy = sandbox.log, sandbox.id
	line := app.check(echeck{name: "the application container: GET, POST",
		args:  []string{"https", "allowed.test", "8443", "allowed.test", "h1", "allowed.test", "GET:/pod", "POST:/pod"},
		out:   `OK issuer="clawrun egress CA ` + sandbox.id[:12],
		saw:   []seen{sawHTTPS("GET", "allowed.test", "/pod")},
		never: []seen{sawHTTPS("POST", "allowed.test", "/pod")}})
	wantParts(t, line, "200 GET /pod", "403 POST /pod")
	if _, err := os.Stat(app.statePath("egress-ca-bundle.pem")); err != nil {
		t.Errorf("the application container's trust bundle: %v", err)
	}
	for _, f := range []string{"egress-ca.key", "egress-ca.pem"} {
		if _, err := os.Stat(app.statePath(f)); !os.IsNotExist(err) {
			t.Errorf("the application container has a CA file of its own, %s: %v", f, err)
		}
	}
}
