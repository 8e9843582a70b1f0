package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// ocsfLine is what the test reads of an OCSF event.
type ocsfLine struct {
	ClassUID   int `json:"class_uid"`
	ActivityID int `json:"activity_id"`
	TypeUID    int `json:"type_uid"`
	ActionID   int `json:"action_id"`
	Query      *struct {
		Hostname string `json:"hostname"`
	} `json:"query"`
	HTTPRequest *struct {
		URL struct {
			Hostname string `json:"hostname"`
		} `json:"url"`
	} `json:"http_request"`
	DstEndpoint *struct {
		Hostname string `json:"hostname"`
	} `json:"dst_endpoint"`
}

// host is the name the event is about.
func (e ocsfLine) host() string {
	switch {
	case e.Query != nil:
		return e.Query.Hostname
	case e.HTTPRequest != nil:
		return e.HTTPRequest.URL.Hostname
	case e.DstEndpoint != nil:
		return e.DstEndpoint.Hostname
	}
	return ""
}

// TestEgressLogOCSF: with egress.log_format: ocsf the filter writes every
// decision as an OCSF event of its class (DNS 4003, HTTP 4002, network
// 4001) and nothing else, and clawrun audit reads them back as decisions.
func TestEgressLogOCSF(t *testing.T) {
	r, fn := egressRuntime(t)
	logDir := t.TempDir()
	config := writeTemp(t, "config.yaml", fmt.Sprintf("egress:\n  upstream_dns: [%q]\n  allowed_upstream_ranges: [%q, %q]\n  log_dir: %s\n  log_format: ocsf\n",
		fn.ip(hDNS)+":53", fn.Prefix(blockLink), fn.Prefix6(blockLink), logDir))
	b := fn.egressBundle(r, withInline(policyDoc(metricsPolicy)))
	c := fn.startAs(r, newID(t), b, "--config", config)
	c.log = filepath.Join(logDir, c.id+".egress.jsonl")
	ip := fn.ip(hAllowed)
	for _, ch := range []echeck{
		{name: "allowed name", args: []string{"dns", fn.ip(hDNS), "allowed.test", "A"}, out: "OK A:" + ip},
		{name: "denied name", args: []string{"dns", fn.ip(hDNS), "denied.test", "A"}, out: "ERR NXDOMAIN"},
		{name: "allowed TLS", args: []string{"tls", ip, "443", "allowed.test"}, out: "OK cn=allowed.test verify=ok"},
		{name: "denied TLS", args: []string{"tls", ip, "443", "denied.test"}, out: "ERR EOF|ERR ECONNRESET"},
		{name: "allowed HTTP", args: []string{"http", ip, "80", "allowed.test"}, out: "OK 200 host=allowed.test"},
		{name: "denied HTTP", args: []string{"http", ip, "80", "denied.test"}, out: "OK 403 "},
	} {
		if line := c.probe(ch.args...); !matches(line, ch.out) {
			t.Errorf("%s: got %q, want %q", ch.name, line, ch.out)
		}
	}
	// class, action (1 allowed, 2 denied), host: one event each.
	want := []string{"4003 1 allowed.test", "4003 2 denied.test", "4001 1 allowed.test", "4001 2 denied.test",
		"4002 1 allowed.test", "4002 2 denied.test"}
	var got []string
	waitFor(t, 10*time.Second, "the six events", func() bool {
		got = readOCSF(t, c.log)
		return len(got) >= len(want)
	})
	for _, w := range want {
		if !strings.Contains(strings.Join(got, "\n")+"\n", w+"\n") {
			t.Errorf("no event %q; the log:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d events, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}

	// audit reads the events as the decisions they carry.
	res := r.ok("--config", config, "audit", "--json", c.id)
	var decisions []string
	sc := bufio.NewScanner(strings.NewReader(res.Stdout))
	for sc.Scan() {
		var d decision
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("audit --json: %v: %q", err, sc.Text())
		}
		decisions = append(decisions, d.Protocol+" "+d.Decision+" "+d.Host)
	}
	for _, w := range []string{"dns allow allowed.test", "dns deny denied.test", "tls allow allowed.test", "tls deny denied.test", "http allow allowed.test", "http deny denied.test"} {
		if !strings.Contains(strings.Join(decisions, "\n")+"\n", w+"\n") {
			t.Errorf("audit lacks %q:\n%s", w, res.Stdout)
		}
	}
}

// readOCSF reads an OCSF decision log: every line must be an event whose
// type_uid is its class's and activity's; each as "class action host".
func readOCSF(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var e ocsfLine
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.ClassUID == 0 {
			t.Fatalf("not an OCSF event (%v): %s", err, line)
		}
		if e.TypeUID != e.ClassUID*100+e.ActivityID {
			t.Errorf("type_uid %d of class %d activity %d: %s", e.TypeUID, e.ClassUID, e.ActivityID, line)
		}
		out = append(out, fmt.Sprintf("%d %d %s", e.ClassUID, e.ActionID, e.host()))
	}
	return out
}
