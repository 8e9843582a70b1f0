package integration

// Credential injection: the agent sends a placeholder, the filter puts the
// secret in its place on inspected requests to the endpoints the
// credential is bound to, and the secret is nowhere the container, the
// state or the logs hold.

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/clawrun/clawrun/test/fakenet"
)

// sawAuth matches a request to host on portHTTPSAuth that carried
// Authorization auth.
func sawAuth(host, auth string) seen {
	return seen{fmt.Sprintf("a request to %s with Authorization %q", host, auth), func(e fakenet.Event) bool {
		return authRequest(host)(e) && e.Auth == auth
	}}
}

// anyAuthRequest matches every request to host on portHTTPSAuth.
func anyAuthRequest(host string) seen {
	return seen{"any request to " + host, authRequest(host)}
}

func authRequest(host string) func(fakenet.Event) bool {
	return func(e fakenet.Event) bool {
		return e.Kind == "https" && e.LocalPort() == portHTTPSAuth && strings.HasPrefix(e.Name, host)
	}
}

const credentialSecret = "sk-clawrun-test-9f8e7d6c5b4a"

// credentialDoc: allowed.test and other.test inspected on portHTTPSAuth,
// allowed.test on plain HTTP too.
const credentialDoc = `  api:
    endpoints:
      - host: allowed.test
        port: 8445
        protocol: rest
        access: read-only
      - host: other.test
        port: 8445
        protocol: rest
        access: read-only
      - host: allowed.test
        port: 80
`

// TestEgressCredentialInjection: the agent sends Authorization: Bearer
// openshell:resolve:env:API_KEY; the upstream the credential is bound to
// sees the secret (positive control); the same placeholder to another
// allowed, inspected host is refused (403, credential_misdirected) and
// that upstream sees nothing; over plain HTTP it is refused (403) and
// not sent. The secret is in no file clawrun wrote
// (state dir, bundle and rootfs, logs) and in no environment of the
// container's processes.
func TestEgressCredentialInjection(t *testing.T) {
	r, fn := egressRuntime(t)
	t.Setenv("CLAWRUN_TEST_API_KEY", credentialSecret) // the runtime's environment
	ca := writeTemp(t, "upstream-ca.pem", string(fn.CAPEM()))
	cfg := writeTemp(t, "config.yaml", fn.egressYAML()+"  upstream_ca_file: "+ca+`
  credentials:
    - name: API_KEY
      env: CLAWRUN_TEST_API_KEY
      endpoints:
        - {host: allowed.test, ports: [8445]}
`)
	c := fn.startAs(r, newID(t), fn.egressBundle(r, withInline(policyDoc(credentialDoc))), "--config", cfg)
	const header = "header:Authorization=Bearer openshell:resolve:env:API_KEY"
	port := strconv.Itoa(portHTTPSAuth)

	c.check(echeck{name: "bound host",
		args: []string{"https", "allowed.test", port, "allowed.test", "h1", "allowed.test", header, "GET:/v1/models"},
		out:  "OK issuer=",
		saw:  []seen{sawAuth("allowed.test", "Bearer "+credentialSecret)}})
	line := c.check(echeck{name: "other host",
		args:  []string{"https", "other.test", port, "other.test", "h1", "other.test", header, "GET:/v1/models"},
		out:   "OK issuer=",
		never: []seen{anyAuthRequest("other.test")}})
	wantParts(t, line, "403 GET /v1/models")
	rec := c.waitRecord(func(rec inspectRecord) bool { return rec.Protocol == "https" && rec.Host == "other.test" })
	if rec.Decision != "deny" || rec.Reason != "credential_misdirected" || !strings.Contains(rec.Detail, "API_KEY") {
		t.Errorf("the refusal's record: %+v", rec)
	}

	// Plain HTTP to the bound host: never injected into cleartext, and
	// not sent as it is either.
	line = c.check(echeck{name: "plain HTTP to the bound host",
		args:  []string{"https", "allowed.test", "80", "allowed.test", "plain", "allowed.test", header, "GET:/v1/plain"},
		out:   `OK issuer=""`,
		never: []seen{sawHTTP("allowed.test", fn.ip(hAllowed))}})
	wantParts(t, line, "403 GET /v1/plain")

	st := r.state(c.id)
	// Controls: the search reads the files and environments it searches
	// (the filter's config names the variable; every process has a PATH).
	if len(filesHolding(t, c.statePath(""), "CLAWRUN_TEST_API_KEY")) == 0 {
		t.Error("the state dir names no credential source: the search reads nothing")
	}
	if len(containerEnvironsHolding(t, st.Pid, "PATH=")) == 0 {
		t.Error("no container process has a PATH: the search reads no environment")
	}
	for _, dir := range []string{c.statePath(""), c.bundle, st.Rootfs, fn.logDir, filepath.Dir(r.logPath)} {
		if hits := filesHolding(t, dir, credentialSecret); len(hits) > 0 {
			t.Errorf("the secret is in %v", hits)
		}
	}
	if hits := containerEnvironsHolding(t, st.Pid, credentialSecret); len(hits) > 0 {
		t.Errorf("the secret is in the environment of the container's processes %v", hits)
	}
}

// filesHolding lists the regular files under dir that contain s.
func filesHolding(t *testing.T, dir, s string) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) {
				return nil
			}
			return err
		}
		if p != dir && d.IsDir() && strings.HasPrefix(p, "/proc") {
			return fs.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(p)
		if err == nil && bytes.Contains(data, []byte(s)) {
			hits = append(hits, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return hits
}

// containerEnvironsHolding lists the processes in the pid namespace of
// the container's init whose environment contains s.
func containerEnvironsHolding(t *testing.T, initPid int, s string) []int {
	t.Helper()
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", initPid))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var hits []int
	seen := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if other, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err != nil || other != ns {
			continue
		}
		seen++
		if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err == nil && bytes.Contains(env, []byte(s)) {
			hits = append(hits, pid)
		}
	}
	if seen == 0 {
		t.Fatalf("no process in the container's pid namespace %s", ns)
	}
	return hits
}

// TestEgressCredentialBadSource: a credential file that group or others
// may read, or a variable the runtime's environment lacks, is refused at
// create, naming the credential, and no container is left.
func TestEgressCredentialBadSource(t *testing.T) {
	r, fn := egressRuntime(t)
	readable := writeTemp(t, "api-key", credentialSecret+"\n") // 0644
	for _, tc := range []struct{ source, want string }{
		{"file: " + readable, "egress.credentials API_KEY: file " + readable + ": mode 0644 lets group or others at it"},
		{"env: CLAWRUN_TEST_UNSET_KEY", "egress.credentials API_KEY: the runtime's environment variable CLAWRUN_TEST_UNSET_KEY is not set"},
	} {
		cfg := writeTemp(t, "config.yaml", fn.egressYAML()+`
  credentials:
    - name: API_KEY
      `+tc.source+`
      endpoints: [{host: allowed.test, ports: [8445]}]
`)
		id := newID(t)
		r.track(id)
		res := r.run("--config", cfg, "run", "-d", "--bundle", fn.egressBundle(r, withInline(policyDoc(credentialDoc))), id)
		if res.Code == 0 || !strings.Contains(res.Stderr, tc.want) {
			t.Fatalf("create with %s:\n%s", tc.source, res)
		}
		if _, err := os.Stat(filepath.Join(r.root, id)); !os.IsNotExist(err) {
			t.Errorf("the refused container's state dir is left: %v", err)
		}
	}
}
