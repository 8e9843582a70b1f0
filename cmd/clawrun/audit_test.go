package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/clawrun/clawrun/egress/decisionlog"
	"github.com/clawrun/clawrun/runtime"
)

func TestAuditPrinterMergesByTime(t *testing.T) {
	at := func(ms int) time.Time { return time.Date(2026, 1, 1, 10, 0, 0, ms*int(time.Millisecond), time.UTC) }
	files := []runtime.FileDenial{
		{Time: at(100), Path: "/srv/a", Access: []string{"fs.write_file"}, Pid: 7, Comm: "sh", Exe: "/bin/busybox"},
		{Time: at(300), Path: "/srv/b", Access: []string{"fs.read_file", "fs.truncate"}, Pid: 8},
	}
	var buf bytes.Buffer
	p := newAuditPrinter(&buf, false, files)
	p.decision(decisionlog.Record{Time: at(200), Decision: "deny", Protocol: "tls", Host: "evil.test", Port: 443, Reason: "not_allowed"})
	p.flushFiles(time.Time{})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		"10:00:00.100 deny  file  /srv/a                                   fs.write_file (pid 7 sh /bin/busybox)",
		"evil.test:443",
		"10:00:00.300 deny  file  /srv/b                                   fs.read_file,fs.truncate (pid 8)",
	}
	if len(lines) != 3 {
		t.Fatalf("lines:\n%s", buf.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d: %q, want %q in it", i, lines[i], w)
		}
	}

	buf.Reset()
	p = newAuditPrinter(&buf, true, files[:1])
	p.flushFiles(time.Time{})
	if got := buf.String(); !strings.Contains(got, `"decision":"deny","protocol":"file","time":"2026-01-01T10:00:00.1Z","path":"/srv/a","access":["fs.write_file"],"pid":7`) {
		t.Errorf("JSON line: %s", got)
	}
}
