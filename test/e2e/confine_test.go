package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/clawrun/clawrun/test/fakenet"
)

// What a container's shell reports about its confinement: one line per
// write attempt, then the kernel's view of the process.
const probeScript = `w() { if err=$( (echo x > "$1") 2>&1 ); then echo "write $1: ok"; else echo "write $1: denied: $err"; fi; }
w /etc/clawrun-e2e; w /sandbox/clawrun-e2e; w /tmp/clawrun-e2e
grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status`

// probe is what probeScript printed.
type probe struct{ out string }

func (p probe) wrote(path string) bool  { return strings.Contains(p.out, "write "+path+": ok") }
func (p probe) denied(path string) bool { return strings.Contains(p.out, "write "+path+": denied") }

// expectConfined checks agent-default's file rules (or egressFloor's, the
// same on these paths) from inside a container.
func expectConfined(t *testing.T, what, out string) {
	t.Helper()
	p := probe{out}
	switch {
	case !p.denied("/etc/clawrun-e2e") || !strings.Contains(out, "Read-only file system"):
		t.Errorf("%s: a write to the read-only /etc was not refused by its read-only mount:\n%s", what, out)
	case !p.wrote("/sandbox/clawrun-e2e") || !p.wrote("/tmp/clawrun-e2e"):
		t.Errorf("%s: writes to /sandbox and /tmp must work:\n%s", what, out)
	case !strings.Contains(out, "NoNewPrivs:\t1"):
		t.Errorf("%s: no_new_privs is not set:\n%s", what, out)
	case !strings.Contains(out, "Seccomp:\t2"):
		t.Errorf("%s: no seccomp filter:\n%s", what, out)
	default:
		t.Logf("%s: confined (/etc read-only, /sandbox and /tmp writable, no_new_privs, seccomp)", what)
	}
}

// expectSandboxOnly checks the sandbox-only policy: /tmp is refused too.
func expectSandboxOnly(t *testing.T, what, out string) {
	t.Helper()
	p := probe{out}
	if !p.denied("/etc/clawrun-e2e") || !p.denied("/tmp/clawrun-e2e") || !p.wrote("/sandbox/clawrun-e2e") {
		t.Errorf("%s: want /etc and /tmp refused, /sandbox writable (policy sandbox-only):\n%s", what, out)
		return
	}
	t.Logf("%s: confined by its own policy (only /sandbox writable)", what)
}

// expectUnconfined checks a container without a policy: runc's behaviour.
func expectUnconfined(t *testing.T, what, out string) {
	t.Helper()
	if !(probe{out}).wrote("/etc/clawrun-e2e") {
		t.Errorf("%s: without a policy /etc must be writable (as with runc):\n%s", what, out)
		return
	}
	t.Logf("%s: not confined without a policy, as with runc", what)
}

// httpGetFunc is a shell function: get HOST fetches / from HOST on port 80
// with busybox's nc (bounded by its timeout) and prints the last line.
const httpGetFunc = `get() { printf 'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$1" | nc -w 5 "$1" 80 2>&1 | tail -1; }`

// egressScript fetches (plain HTTP on port 80, with busybox's nc: its
// wget crashes in Debian's busybox-static) the allowed host, a denied one
// and an IP literal, each bounded by nc's timeout; one line for each.
func egressScript(denied, ip string) string {
	return httpGetFunc + fmt.Sprintf(`
echo "allowed: $(get %s)"
echo "denied: $(get %s)"
echo "literal: $(get %s)"`, allowedHost, denied, ip)
}

// expectEgress checks what egressScript printed, and that the denied name
// never reached the fake internet's resolver.
func expectEgress(t *testing.T, f *fakeNet, what, denied, out string) {
	t.Helper()
	ok := true
	if !strings.Contains(out, "allowed: "+answered+allowedHost+" ") {
		t.Errorf("%s: the allowed host did not answer through the egress filter:\n%s", what, out)
		ok = false
	}
	if strings.Contains(out, "denied: "+answered) {
		t.Errorf("%s: the denied host %s was reachable:\n%s", what, denied, out)
		ok = false
	}
	if strings.Contains(out, "literal: "+answered) {
		t.Errorf("%s: an IP literal went through the egress filter:\n%s", what, out)
		ok = false
	}
	if f.queried(denied) {
		t.Errorf("%s: the denied name %s was sent to the upstream resolver", what, denied)
		ok = false
	}
	if ok {
		t.Logf("%s: egress enforced (%s answers; %s and an IP literal do not; the denied name never left): %q", what, allowedHost, denied, strings.Split(strings.TrimSpace(out), "\n"))
	}
}

// floorHost is a name agent-coding's network floor allows (its github
// preset: HTTPS only); floorPath is what the containers ask it for.
const floorHost, floorPath = "api.github.com", "/clawrun-floor"

// tlsGetFunc is a shell function: "tls HOST" makes an HTTPS request for
// floorPath to HOST (busybox's ssl_client over nc; the fake internet's
// server answers and closes) and prints the last line of the answer (or
// of the error).
const tlsGetFunc = `tls() { exec 4>&1; nc -w 5 "$1" 443 -e sh -c "exec 5<&0 6>&1 1>&4; printf 'GET ` + floorPath + ` HTTP/1.0\r\nHost: $1\r\n\r\n' | ssl_client -r 5 -s 6 -n $1 | tail -1" 2>&1 | tail -1; }`

// floorEgressScript makes an HTTPS request to floorHost, and tries plain
// HTTP to floorHost and to denied; a line each.
func floorEgressScript(denied string) string {
	return httpGetFunc + "\n" + tlsGetFunc + fmt.Sprintf(`
echo "tls: $(tls %[1]s)"
echo "http: $(get %[1]s)"
echo "denied: $(get %[2]s)"`, floorHost, denied)
}

// expectFloorEgress runs floorEgressScript with exec and checks
// agent-coding's network floor: the HTTPS request reached the fake
// internet's server for floorHost (recorded there, and its answer, which
// only that server sends, came back), plain HTTP to floorHost and to
// denied was refused, and denied was never sent to the upstream resolver.
func expectFloorEgress(t *testing.T, f *fakeNet, what, denied string, exec func(script string) result) {
	t.Helper()
	mark := f.Mark()
	r := exec(floorEgressScript(denied))
	out := r.stdout + r.stderr
	ok := true
	answer := fmt.Sprintf("tls: %s%s local=%s path=%s proto=HTTP/1.0", answered, floorHost, f.Addr(), floorPath)
	_, recorded := f.Wait(mark, 5*time.Second, func(e fakenet.Event) bool {
		return e.Kind == "https" && e.Name == floorHost && e.Path == floorPath
	})
	if !strings.Contains(out, answer) || !recorded {
		t.Errorf("%s: HTTPS to %s (the floor's github preset) did not reach the fake internet (its answer: %v, the request recorded there: %v):\n%s\nthe fake internet saw:%s",
			what, floorHost, strings.Contains(out, answer), recorded, out, f.Dump(mark))
		ok = false
	}
	if strings.Contains(out, "denied: "+answered) || strings.Contains(out, "http: "+answered) {
		t.Errorf("%s: plain HTTP, to a name the floor does not list or to one it lists for HTTPS only, answered:\n%s", what, out)
		ok = false
	}
	if f.queried(denied) {
		t.Errorf("%s: the name %s, which the floor does not list, was sent to the upstream resolver", what, denied)
		ok = false
	}
	if ok {
		t.Logf("%s: the floor's egress: HTTPS to %s answered by the fake internet, %s never left, plain HTTP refused: %q", what, floorHost, denied, strings.Split(strings.TrimSpace(out), "\n"))
	}
}

// clawrunState is the part of `clawrun state` the tests read.
type clawrunState struct {
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Annotations map[string]string `json:"annotations"`
	Clawrun     *struct {
		Policy   string `json:"policy"`
		Egress   string `json:"egress"`
		Landlock struct {
			Status string `json:"status"`
			ABI    int    `json:"abi"`
		} `json:"landlock"`
		Seccomp struct {
			Profile string `json:"profile"`
			Loaded  bool   `json:"loaded"`
		} `json:"seccomp"`
	} `json:"clawrun"`
}

// stateOf reads a container's state with clawrun itself, from the root
// its front-end gave it: proof that clawrun (not runc) runs it.
func stateOf(t *testing.T, root, id string) clawrunState {
	t.Helper()
	out := must(t, run(theEnv.clawrun, "--root", root, "state", id))
	var st clawrunState
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("clawrun state %s: %v\n%s", id, err, out)
	}
	return st
}

// expectStateConfined checks the clawrun object of a running container.
func expectStateConfined(t *testing.T, st clawrunState, policy string, egress bool) {
	t.Helper()
	c := st.Clawrun
	if c == nil {
		t.Errorf("clawrun state %s: no clawrun object: the container runs without a policy", st.ID)
		return
	}
	if policy != "" && !strings.Contains(c.Policy, policy) {
		t.Errorf("clawrun state %s: policy %q, want %q", st.ID, c.Policy, policy)
	}
	if c.Landlock.Status != "enforced" && c.Landlock.Status != "partial" {
		t.Errorf("clawrun state %s: landlock %q, want enforced", st.ID, c.Landlock.Status)
	}
	if egress && !strings.HasPrefix(c.Egress, "filtering") {
		t.Errorf("clawrun state %s: egress filter off", st.ID)
	}
	t.Logf("clawrun state %s: policy %q, landlock %s (ABI %d), seccomp %s loaded=%v, egress %s",
		shortID(st.ID), c.Policy, c.Landlock.Status, c.Landlock.ABI, c.Seccomp.Profile, c.Seccomp.Loaded, c.Egress)
}

// listIDs is `clawrun list` under a root. A list that fails fails the
// test: an empty list must mean that no container is left.
func listIDs(t *testing.T, root string) []string {
	t.Helper()
	r := run(theEnv.clawrun, "--root", root, "list", "--format", "json")
	if r.code != 0 {
		t.Fatalf("clawrun list under %s: %v", root, r)
	}
	var states []clawrunState
	if err := json.Unmarshal([]byte(r.stdout), &states); err != nil {
		t.Fatalf("clawrun list --format json under %s: %v: %q", root, err, r.stdout)
	}
	var ids []string
	for _, s := range states {
		ids = append(ids, s.ID)
	}
	return ids
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
